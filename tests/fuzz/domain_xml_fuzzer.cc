// Fuzz target: libvirt domain XML → deploy/libvirt ParseDomainXml / ParseDomainIdentity →
// domain or error, never a crash. A domain that parses fully has the identity that the
// identity-only parser reads, and its bindings point at existing interfaces.
#include <cstdint>
#include <string>
#include <string_view>

#include "deploy/libvirt/domain_xml.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::libvirt;
  std::string_view xml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<DomainIdentity> identity = ParseDomainIdentity(xml, "fuzz.xml");
  absl::StatusOr<Domain> domain = ParseDomainXml(xml, "fuzz.xml");
  if (!domain.ok()) return 0;
  FUZZ_CHECK(identity.ok(), "full parse accepts what the identity parse refuses: %s",
             std::string(identity.status().message()).c_str());
  FUZZ_CHECK(identity->name == domain->identity.name && identity->uuid == domain->identity.uuid &&
                 identity->has_sluice_metadata == domain->identity.has_sluice_metadata,
             "identity differs between the two parsers");
  for (const SluiceBinding& b : domain->bindings) {
    FUZZ_CHECK(b.interface_index < domain->interfaces.size(), "binding names interface %zu of %zu",
               b.interface_index, domain->interfaces.size());
  }
  return 0;
}
