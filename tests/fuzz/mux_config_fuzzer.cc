// Fuzz target: YAML text → mux_lite ParseMuxConfig → config or error, never a crash.
// A config the parser accepts must build its VIP tables (Maglev etc., mux_lite/mux.h
// VipTable::Build); tables are built only for sizes a fuzz iteration can afford.
#include <cstdint>
#include <string>

#include "mux_lite/config.h"
#include "mux_lite/mux.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  std::string yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<mux::MuxConfig> config = mux::ParseMuxConfig(yaml, "fuzz.yaml");
  if (!config.ok()) {
    FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
    return 0;
  }
  size_t backends = 0;
  for (const mux::VipConfig& vip : config->vips) backends += vip.backends.size();
  if (config->maglev_size > 65537 || backends > 64 || config->vips.size() > 16) return 0;
  std::string error;
  auto table = mux::VipTable::Build(*config, &error);
  FUZZ_CHECK(table != nullptr, "accepted config does not build: %s", error.c_str());
  return 0;
}
