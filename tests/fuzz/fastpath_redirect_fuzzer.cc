// Fuzz target: bytes → DecodeFastpathRedirect (offload/packet/fastpath_redirect.h) under the
// lab key. Invariants: only kFastpathRedirectLen-byte payloads decode, and a payload that
// verifies re-encodes to exactly the same bytes. The first byte also drives ParseFastpathKey
// on the rest as text.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "offload/packet/fastpath_redirect.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const char kLabKeyHex[] = "5c1ce0f5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304152";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::packet;
  static FastpathKey key = [] {
    FastpathKey k{};
    FUZZ_CHECK(ParseFastpathKey(kLabKeyHex, &k), "lab key does not parse");
    return k;
  }();
  if (size == 0) return 0;
  if (data[0] == 'K') {  // key text
    std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
    FastpathKey parsed{};
    if (ParseFastpathKey(text.c_str(), &parsed)) {
      FUZZ_CHECK(strlen(text.c_str()) == 64, "accepted a key of %zu digits", strlen(text.c_str()));
    }
    return 0;
  }
  // Exact-size copy so a read past the payload is caught.
  std::unique_ptr<uint8_t[]> payload(new uint8_t[size]);
  memcpy(payload.get(), data, size);
  FastpathRedirect redirect;
  RedirectCheck check = DecodeFastpathRedirect(payload.get(), size, key, &redirect);
  if (check == RedirectCheck::kOk) {
    FUZZ_CHECK(size == kFastpathRedirectLen, "decoded a payload of %zu bytes", size);
    uint8_t again[kFastpathRedirectLen];
    EncodeFastpathRedirect(redirect, key, again);
    FUZZ_CHECK(memcmp(again, payload.get(), size) == 0, "decode/encode does not round-trip");
  }
  return 0;
}
