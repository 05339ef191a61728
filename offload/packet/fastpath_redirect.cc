#include "offload/packet/fastpath_redirect.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>
#include <utility>

#include "offload/packet/checksum.h"

namespace sluice::packet {
namespace {

constexpr size_t kSignedLen = 44;

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Put32(uint8_t* p, uint32_t v) {
  Put16(p, static_cast<uint16_t>(v >> 16));
  Put16(p + 2, static_cast<uint16_t>(v));
}
void Put64(uint8_t* p, uint64_t v) {
  Put32(p, static_cast<uint32_t>(v >> 32));
  Put32(p + 4, static_cast<uint32_t>(v));
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Get32(const uint8_t* p) { return uint32_t{Get16(p)} << 16 | Get16(p + 2); }
uint64_t Get64(const uint8_t* p) { return uint64_t{Get32(p)} << 32 | Get32(p + 4); }

void Sign(const uint8_t* data, const FastpathKey& key, uint8_t* mac) {
  unsigned int len = 32;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data, kSignedLen, mac, &len);
}

}  // namespace

void EncodeFastpathRedirect(const FastpathRedirect& r, const FastpathKey& key, uint8_t* p) {
  memset(p, 0, kFastpathRedirectLen);
  memcpy(p, "SLFP", 4);
  p[4] = 1;
  p[5] = 1;
  Put32(p + 8, r.flow_src);
  Put32(p + 12, r.flow_dst);
  Put16(p + 16, r.flow_src_port);
  Put16(p + 18, r.flow_dst_port);
  p[20] = r.proto;
  p[21] = static_cast<uint8_t>(r.dst_encap);
  p[22] = static_cast<uint8_t>(r.src_encap);
  Put32(p + 24, r.dip);
  Put32(p + 28, r.dst_pa);
  Put32(p + 32, r.src_host_pa);
  Put64(p + 36, r.timestamp_s);
  Sign(p, key, p + kSignedLen);
}

RedirectCheck DecodeFastpathRedirect(const uint8_t* p, size_t len, const FastpathKey& key,
                                     FastpathRedirect* out) {
  if (len != kFastpathRedirectLen || memcmp(p, "SLFP", 4) != 0 || p[4] != 1 || p[5] != 1) {
    return RedirectCheck::kMalformed;
  }
  uint8_t mac[32];
  Sign(p, key, mac);
  if (CRYPTO_memcmp(mac, p + kSignedLen, sizeof(mac)) != 0) return RedirectCheck::kBadAuth;
  out->flow_src = Get32(p + 8);
  out->flow_dst = Get32(p + 12);
  out->flow_src_port = Get16(p + 16);
  out->flow_dst_port = Get16(p + 18);
  out->proto = p[20];
  for (auto [byte, encap] : {std::pair{p[21], &out->dst_encap}, std::pair{p[22], &out->src_encap}}) {
    if (byte > static_cast<uint8_t>(flow::Tunnel::kGre)) return RedirectCheck::kMalformed;
    *encap = static_cast<flow::Tunnel>(byte);  // kNone (0, an older mux): IPIP
  }
  out->dip = Get32(p + 24);
  out->dst_pa = Get32(p + 28);
  out->src_host_pa = Get32(p + 32);
  out->timestamp_s = Get64(p + 36);
  return RedirectCheck::kOk;
}

void BuildFastpathRedirectFrame(uint8_t* f, const flow::MacAddr& src_mac,
                                const flow::MacAddr& dst_mac, uint32_t src_ip, uint32_t dst_ip,
                                const FastpathRedirect& redirect, const FastpathKey& key) {
  memcpy(f, dst_mac.data(), 6);
  memcpy(f + 6, src_mac.data(), 6);
  Put16(f + 12, 0x0800);
  uint8_t* ip = f + 14;
  memset(ip, 0, 20);
  ip[0] = 0x45;
  Put16(ip + 2, static_cast<uint16_t>(20 + 8 + kFastpathRedirectLen));
  Put16(ip + 6, 0x4000);
  ip[8] = 64;
  ip[9] = flow::kProtoUdp;
  Put32(ip + 12, src_ip);
  Put32(ip + 16, dst_ip);
  uint16_t csum = Ipv4HeaderChecksum(ip, 20);
  memcpy(ip + 10, &csum, 2);
  uint8_t* udp = ip + 20;
  Put16(udp, kFastpathUdpPort);
  Put16(udp + 2, kFastpathUdpPort);
  Put16(udp + 4, static_cast<uint16_t>(8 + kFastpathRedirectLen));
  Put16(udp + 6, 0);
  EncodeFastpathRedirect(redirect, key, udp + 8);
}

bool ParseFastpathKey(const char* hex, FastpathKey* key) {
  if (hex == nullptr || strlen(hex) != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    uint8_t byte = 0;
    for (int half = 0; half < 2; ++half) {
      char c = hex[2 * i + half];
      uint8_t v;
      if (c >= '0' && c <= '9') {
        v = static_cast<uint8_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v = static_cast<uint8_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v = static_cast<uint8_t>(c - 'A' + 10);
      } else {
        return false;
      }
      byte = static_cast<uint8_t>(byte << 4 | v);
    }
    (*key)[i] = byte;
  }
  return true;
}

}  // namespace sluice::packet
