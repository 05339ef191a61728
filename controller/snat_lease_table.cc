#include "controller/snat_lease_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::snatd {
namespace {

constexpr const char* kStateHeader = "sluice-snatd-state 2";
// Chunk lines without the encapsulation word: every chunk's host took IPIP.
constexpr const char* kStateHeaderV1 = "sluice-snatd-state 1";

uint32_t PoolLast(const SnatPoolConfig& p) { return uint32_t{p.port_start} + p.port_count - 1; }

}  // namespace

const char* HostEncapName(HostEncap encap) {
  switch (encap) {
    case HostEncap::kGue:
      return "gue";
    case HostEncap::kGre:
      return "gre";
    case HostEncap::kIpip:
      break;
  }
  return "ipip";
}

std::string PoolText(const SnatPoolConfig& pool) {
  return StrCat(Ipv4ToString(pool.vip), " ", L4ProtocolName(pool.proto), " ", pool.port_start,
                "-", PoolLast(pool));
}

std::string ChunkText(const SnatChunkLease& l) {
  return StrCat(Ipv4ToString(l.vip), ":", l.port_start, "+", l.port_count, "/",
                L4ProtocolName(l.proto), " -> ", l.host, " (", Ipv4ToString(l.host_pa),
                l.encap == HostEncap::kIpip ? "" : StrCat(", ", HostEncapName(l.encap)), ") dip ",
                Ipv4ToString(l.dip));
}

absl::Status SnatLeaseTable::CheckPools(const std::vector<SnatPoolConfig>& pools) {
  for (size_t i = 0; i < pools.size(); ++i) {
    const SnatPoolConfig& p = pools[i];
    const std::string field = StrCat("pools[", i, "]");
    if (p.proto != 6 && p.proto != 17) {
      return absl::InvalidArgumentError(StrCat(field, ".protocol: must be tcp or udp"));
    }
    if (p.port_start == 0 || p.port_count == 0 || PoolLast(p) > 65535) {
      return absl::InvalidArgumentError(
          StrCat(field, ".port_count: ports ", p.port_start, "..", PoolLast(p),
                 " are not inside 1..65535"));
    }
    if (p.chunk_ports == 0 || p.chunk_ports > p.port_count) {
      return absl::InvalidArgumentError(StrCat(field, ".chunk_ports: ", p.chunk_ports,
                                               " is not in 1..port_count (", p.port_count, ")"));
    }
    for (size_t j = 0; j < i; ++j) {
      const SnatPoolConfig& o = pools[j];
      if (o.vip == p.vip && o.proto == p.proto && p.port_start <= PoolLast(o) &&
          o.port_start <= PoolLast(p)) {
        return absl::InvalidArgumentError(StrCat(field, ".port_start: ", PoolText(p),
                                                 " overlaps pools[", j, "] (", PoolText(o), ")"));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<SnatLeaseTable::Pool> SnatLeaseTable::Carve(const std::vector<SnatPoolConfig>& pools) {
  std::vector<Pool> out;
  for (const SnatPoolConfig& config : pools) {
    Pool pool{.config = config};
    for (uint32_t offset = 0; offset < config.port_count; offset += config.chunk_ports) {
      pool.chunks.push_back(Chunk{
          .port_start = static_cast<uint16_t>(config.port_start + offset),
          .port_count = static_cast<uint16_t>(std::min(config.chunk_ports,
                                                       config.port_count - offset))});
    }
    out.push_back(std::move(pool));
  }
  return out;
}

SnatLeaseTable::SnatLeaseTable(std::vector<SnatPoolConfig> pools)
    : configs_(std::move(pools)), pools_(Carve(configs_)) {}

SnatLeaseTable::Chunk* SnatLeaseTable::FindChunk(std::vector<Pool>& pools, uint32_t vip,
                                                 uint8_t proto, uint16_t port_start) {
  for (Pool& pool : pools) {
    const SnatPoolConfig& c = pool.config;
    if (c.vip != vip || c.proto != proto || port_start < c.port_start ||
        port_start > PoolLast(c)) {
      continue;
    }
    const uint32_t offset = port_start - c.port_start;
    if (offset % c.chunk_ports != 0) return nullptr;
    return &pool.chunks[offset / c.chunk_ports];
  }
  return nullptr;
}

absl::StatusOr<SnatChunkLease> SnatLeaseTable::Lease(const std::string& host, uint32_t host_pa,
                                                     uint32_t dip, uint32_t vip, uint8_t proto,
                                                     HostEncap encap) {
  Chunk* best = nullptr;
  std::vector<std::string> serving;
  for (Pool& pool : pools_) {
    if (pool.config.vip != vip || pool.config.proto != proto) continue;
    serving.push_back(PoolText(pool.config));
    for (Chunk& chunk : pool.chunks) {
      if (!chunk.lease && (best == nullptr || chunk.free_since < best->free_since)) best = &chunk;
    }
  }
  if (serving.empty()) {
    return absl::NotFoundError(StrCat("vip: no pool serves ", Ipv4ToString(vip), " ",
                                      L4ProtocolName(proto)));
  }
  if (best == nullptr) {
    std::string names;
    for (const std::string& s : serving) names += (names.empty() ? "" : ", ") + s;
    return absl::ResourceExhaustedError(StrCat("every chunk of pool ", names, " is leased"));
  }
  best->lease = SnatChunkLease{.vip = vip,
                               .proto = proto,
                               .port_start = best->port_start,
                               .port_count = best->port_count,
                               .host = host,
                               .host_pa = host_pa,
                               .dip = dip,
                               .encap = encap};
  ++generation_;
  return *best->lease;
}

absl::Status SnatLeaseTable::Release(const std::string& host, uint32_t dip, uint32_t vip,
                                     uint8_t proto, uint16_t port_start) {
  Chunk* chunk = FindChunk(pools_, vip, proto, port_start);
  const std::string key = StrCat(Ipv4ToString(vip), ":", port_start, "/", L4ProtocolName(proto));
  if (chunk == nullptr) {
    return absl::NotFoundError(StrCat("port_start: no chunk of any pool starts at ", key));
  }
  if (!chunk->lease) return absl::NotFoundError(StrCat("port_start: chunk ", key, " is not leased"));
  if (chunk->lease->host != host || chunk->lease->dip != dip) {
    return absl::FailedPreconditionError(StrCat("port_start: chunk ", key, " is leased to ",
                                                chunk->lease->host, " dip ",
                                                Ipv4ToString(chunk->lease->dip), ", not ", host,
                                                " dip ", Ipv4ToString(dip)));
  }
  chunk->lease.reset();
  chunk->free_since = ++release_sequence_;
  ++generation_;
  return absl::OkStatus();
}

std::vector<SnatChunkLease> SnatLeaseTable::Leases() const {
  std::vector<SnatChunkLease> out;
  for (const Pool& pool : pools_) {
    for (const Chunk& chunk : pool.chunks) {
      if (chunk.lease) out.push_back(*chunk.lease);
    }
  }
  std::sort(out.begin(), out.end(), [](const SnatChunkLease& a, const SnatChunkLease& b) {
    return std::tie(a.vip, a.proto, a.port_start) < std::tie(b.vip, b.proto, b.port_start);
  });
  return out;
}

std::vector<SnatPoolStatus> SnatLeaseTable::Pools() const {
  std::vector<SnatPoolStatus> out;
  for (const Pool& pool : pools_) {
    SnatPoolStatus s{.config = pool.config, .chunks = static_cast<uint32_t>(pool.chunks.size())};
    for (const Chunk& chunk : pool.chunks) s.chunks_leased += chunk.lease ? 1 : 0;
    out.push_back(s);
  }
  return out;
}

std::string SnatLeaseTable::Serialize() const {
  std::string out = StrCat(kStateHeader, "\ngeneration ", generation_, "\n");
  for (const SnatChunkLease& l : Leases()) {
    out += StrCat("chunk ", Ipv4ToString(l.vip), " ", L4ProtocolName(l.proto), " ", l.port_start,
                  " ", l.port_count, " ", l.host, " ", Ipv4ToString(l.host_pa), " ",
                  Ipv4ToString(l.dip), " ", HostEncapName(l.encap), "\n");
  }
  return out;
}

absl::Status SnatLeaseTable::Restore(const std::string& text, const std::string& origin) {
  std::vector<Pool> pools = Carve(configs_);
  uint64_t generation = 0;
  std::istringstream in(text);
  std::string line;
  size_t number = 0;
  bool header = false;
  size_t chunk_words = 9;  // version 1: 8, no encapsulation
  auto fail = [&](const std::string& why) {
    return absl::FailedPreconditionError(StrCat(origin, ":", number, ": ", why));
  };
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    std::vector<std::string> words;
    std::istringstream split(line);
    for (std::string w; split >> w;) words.push_back(w);
    if (!header) {
      if (line == kStateHeaderV1) {
        chunk_words = 8;
      } else if (line != kStateHeader) {
        return fail(StrCat("not a sluice-snatd state file (want '", kStateHeader, "' or '",
                           kStateHeaderV1, "')"));
      }
      header = true;
      continue;
    }
    if (words.size() == 2 && words[0] == "generation") {
      if (!ParseUint(words[1], &generation)) return fail("bad generation");
      continue;
    }
    if (words.size() != chunk_words || words[0] != "chunk") {
      return fail(chunk_words == 8
                      ? "want 'chunk VIP PROTOCOL PORT_START PORT_COUNT HOST HOST_PA DIP'"
                      : "want 'chunk VIP PROTOCOL PORT_START PORT_COUNT HOST HOST_PA DIP ENCAP'");
    }
    SnatChunkLease l;
    absl::StatusOr<uint32_t> vip = ParseIpv4(words[1]);
    absl::StatusOr<uint8_t> proto = ParseL4Protocol(words[2]);
    uint64_t start = 0, count = 0;
    absl::StatusOr<uint32_t> host_pa = ParseIpv4(words[6]);
    absl::StatusOr<uint32_t> dip = ParseIpv4(words[7]);
    if (!vip.ok() || !proto.ok() || !ParseUint(words[3], &start) || !ParseUint(words[4], &count) ||
        start == 0 || start > 65535 || count == 0 || count > 65535 || !host_pa.ok() || !dip.ok()) {
      return fail(StrCat("malformed chunk line '", line, "'"));
    }
    l.vip = *vip;
    l.proto = *proto;
    l.port_start = static_cast<uint16_t>(start);
    l.port_count = static_cast<uint16_t>(count);
    l.host = words[5];
    l.host_pa = *host_pa;
    l.dip = *dip;
    if (chunk_words == 9) {
      const std::string& encap = words[8];
      if (encap == "ipip") {
        l.encap = HostEncap::kIpip;
      } else if (encap == "gue") {
        l.encap = HostEncap::kGue;
      } else if (encap == "gre") {
        l.encap = HostEncap::kGre;
      } else {
        return fail(StrCat("encapsulation '", encap, "' of line '", line,
                           "' is not ipip, gue or gre"));
      }
    }
    Chunk* chunk = FindChunk(pools, l.vip, l.proto, l.port_start);
    if (chunk == nullptr || chunk->port_count != l.port_count) {
      return fail(StrCat("chunk ", ChunkText(l),
                         " is not a chunk of the configured pools (were the pools changed? "
                         "restore them, or remove the line once the host has stopped using "
                         "those ports)"));
    }
    if (chunk->lease) return fail(StrCat("chunk ", ChunkText(l), " is leased twice"));
    chunk->lease = l;
  }
  if (!header) return absl::FailedPreconditionError(StrCat(origin, ": empty state file"));
  pools_ = std::move(pools);
  generation_ = generation;
  return absl::OkStatus();
}

}  // namespace sluice::snatd
