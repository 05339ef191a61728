// sluicectl: the operator's command line and, in the lab, the cloud controller.
//
//   sluicectl apply -f cloud.yaml [--dry-run] [-o json]
//   sluicectl get vips|backends|snat-ranges --socket MUX [-o json]
//   sluicectl get endpoints|leases|flows|vms --socket AGENT [--dip IP] [--limit N] [-o json]
//   sluicectl get flows --socket MUX [--limit N] [-o json]   (the flows offloaded to the NIC)
//   sluicectl get stats --socket MUX_OR_AGENT [-o json]
//   sluicectl get snat-chunks --socket SNATD [--host NAME] [-o json]   (the SNAT allocator)
//   sluicectl health (--socket S | -f cloud.yaml) [-o json]
//   sluicectl mux drain|resume --socket MUX
//   sluicectl version [--socket S]
//   sluicectl stats --socket STATS_SOCKET [-o json|table]   (the daemons' stats socket)
//   sluicectl get nic-rules --stats-socket AGENT_STATS_SOCKET [--testpmd]
//   sluicectl top --socket STATS_SOCKET [--socket ...] [--interval S] [--count N] [--rows N]
//
// --socket takes a daemon's gRPC address: a unix socket path, unix:PATH or host:port.
// host:port targets (--socket or cloud.yaml's grpc:) use TLS when --tls-ca and/or --tls-cert
// + --tls-key are given: the server must present a certificate from --tls-ca (the system's
// roots without it) for the target's host (or --tls-server-name), and sluicectl presents
// --tls-cert to a daemon that requires client certificates (mutual TLS). Unix sockets are
// always plain: their file permissions decide who may call.
// Exit status: 0 done, 1 a daemon refused or could not be reached (nothing is half-applied
// silently: apply prints what each daemon changed before the failure), 2 bad command line
// or cloud.yaml.
#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/config_reader.h"
#include "common/grpc_util.h"
#include "common/net_text.h"
#include "common/stats_server.h"
#include "common/strings.h"
#include "hostagent/sluicectl_top.h"
#include "sluice/v1/agent.grpc.pb.h"
#include "sluice/v1/mux.grpc.pb.h"
#include "sluice/v1/snat_allocator.grpc.pb.h"

namespace sluice::ctl {
namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;
constexpr auto kRpcTimeout = std::chrono::seconds(5);

int Usage() {
  fprintf(stderr,
          "usage: sluicectl apply -f cloud.yaml [--dry-run] [-o json]\n"
          "       sluicectl get vips|backends|snat-ranges --socket MUX [-o json]\n"
          "       sluicectl get endpoints|leases|flows|vms --socket AGENT [--dip IP] [--limit N]"
          " [-o json]\n"
          "       sluicectl get flows --socket MUX [--limit N] [-o json]\n"
          "       sluicectl get stats --socket MUX_OR_AGENT [-o json]\n"
          "       sluicectl get snat-chunks --socket SNATD [--host NAME] [-o json]\n"
          "       sluicectl health (--socket S | -f cloud.yaml) [-o json]\n"
          "       sluicectl mux drain|resume --socket MUX\n"
          "       sluicectl version [--socket S]\n"
          "       sluicectl stats --socket STATS_SOCKET [-o json|table]\n"
          "       sluicectl get nic-rules --stats-socket AGENT_STATS_SOCKET [--testpmd]\n"
          "       sluicectl top --socket STATS_SOCKET [--socket ...] [--interval S] [--count N]"
          " [--rows N]\n"
          "TLS to host:port targets: [--tls-ca CA.pem] [--tls-cert CERT.pem --tls-key KEY.pem]\n"
          "       [--tls-server-name NAME]\n");
  return kUsage;
}

struct Options {
  std::string socket;
  std::string file;
  std::string output = "table";
  std::string dip;
  std::string host;  ///< --host: one host's chunks (get snat-chunks).
  uint32_t limit = 0;
  bool dry_run = false;
  std::string stats_socket;  ///< --stats-socket: a daemon's stats socket (get nic-rules).
  bool testpmd = false;      ///< --testpmd: full dpdk-testpmd commands, not just the rules.
  std::vector<std::string> args;  ///< Positional words after the command.
  TlsFiles tls;               ///< --tls-cert/--tls-key/--tls-ca for host:port targets.
  std::string tls_server_name;  ///< --tls-server-name: the name the server's cert carries.
  DialOptions dial;           ///< From the above, files read and checked.
};

std::shared_ptr<grpc::Channel> Dial(const Options& o, const std::string& target) {
  return DialSluice(target, o.dial);
}

bool ParseOptions(int argc, char** argv, int first, Options* o) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (arg == "--socket") {
      if (!value(&o->socket)) return false;
    } else if (arg == "-f" || arg == "--file") {
      if (!value(&o->file)) return false;
    } else if (arg == "-o" || arg == "--output") {
      if (!value(&o->output)) return false;
      if (o->output != "json" && o->output != "table") return false;
    } else if (arg == "--dip") {
      if (!value(&o->dip)) return false;
    } else if (arg == "--host") {
      if (!value(&o->host)) return false;
    } else if (arg == "--limit") {
      std::string text;
      uint64_t n = 0;
      if (!value(&text) || !ParseUint(text, &n) || n > 100000) return false;
      o->limit = static_cast<uint32_t>(n);
    } else if (arg == "--dry-run") {
      o->dry_run = true;
    } else if (arg == "--stats-socket") {
      if (!value(&o->stats_socket)) return false;
    } else if (arg == "--testpmd") {
      o->testpmd = true;
    } else if (arg == "--tls-cert") {
      if (!value(&o->tls.cert)) return false;
    } else if (arg == "--tls-key") {
      if (!value(&o->tls.key)) return false;
    } else if (arg == "--tls-ca") {
      if (!value(&o->tls.ca)) return false;
    } else if (arg == "--tls-server-name") {
      if (!value(&o->tls_server_name)) return false;
    } else if (!arg.empty() && arg[0] == '-') {
      fprintf(stderr, "sluicectl: unknown option '%s'\n", arg.c_str());
      return false;
    } else {
      o->args.push_back(arg);
    }
  }
  return true;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
}

std::string Describe(const grpc::Status& s) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  const int code = s.error_code();
  return StrCat(code >= 0 && code <= 16 ? kNames[code] : "?", ": ", s.error_message());
}

int Fail(const std::string& who, const grpc::Status& s) {
  fprintf(stderr, "sluicectl: %s: %s\n", who.c_str(), Describe(s).c_str());
  return kFailed;
}

// A plain text table: header row, then rows, columns padded to the widest cell.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size());
  for (size_t c = 0; c < header.size(); ++c) widths[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c) {
      widths[c] = std::max(widths[c], row[c].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - row[c].size() + 2, ' ');
    }
    printf("%s\n", line.c_str());
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

std::string Proto(v1::L4Protocol p) {
  return p == v1::L4_PROTOCOL_TCP ? "tcp" : p == v1::L4_PROTOCOL_UDP ? "udp" : "any";
}

std::string SchedulerText(v1::Scheduler s) {
  switch (s) {
    case v1::SCHEDULER_WEIGHTED_ROUND_ROBIN:
      return "weighted-round-robin";
    case v1::SCHEDULER_SOURCE_HASH:
      return "source-hash";
    default:
      return "maglev";
  }
}

std::string StateText(v1::HealthResponse::State s) {
  switch (s) {
    case v1::HealthResponse::STATE_STARTING:
      return "starting";
    case v1::HealthResponse::STATE_SERVING:
      return "serving";
    case v1::HealthResponse::STATE_DRAINING:
      return "draining";
    case v1::HealthResponse::STATE_NOT_SERVING:
      return "not-serving";
    default:
      return "unknown";
  }
}

// ---------------------------------------------------------------------------------------
// stats (the daemons' stats socket; the lab scripts read it)

std::string Scalar(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// Scalars as "key  value" lines; objects of scalars flattened as "parent.key"; arrays of
// objects as a table with one row per element.
void PrintStatsTable(const nlohmann::json& doc) {
  std::vector<std::pair<std::string, std::string>> lines;
  for (auto& [key, value] : doc.items()) {
    if (value.is_object()) {
      for (auto& [sub, v] : value.items()) {
        if (!v.is_number() || v.get<uint64_t>() != 0 || key != "drops") {
          lines.emplace_back(key + "." + sub, Scalar(v));
        }
      }
    } else if (!value.is_array()) {
      lines.emplace_back(key, Scalar(value));
    }
  }
  size_t width = 0;
  for (auto& [k, v] : lines) width = std::max(width, k.size());
  for (auto& [k, v] : lines) printf("%-*s  %s\n", static_cast<int>(width), k.c_str(), v.c_str());
  for (auto& [key, value] : doc.items()) {
    if (!value.is_array() || value.empty() || !value[0].is_object()) continue;
    std::vector<std::string> columns;
    for (auto& [col, v] : value[0].items()) columns.push_back(col);
    std::vector<std::vector<std::string>> rows;
    for (const auto& row : value) {
      std::vector<std::string> cells;
      for (const std::string& c : columns) cells.push_back(Scalar(row.value(c, nlohmann::json())));
      rows.push_back(std::move(cells));
    }
    printf("\n%s:\n", key.c_str());
    PrintTable(columns, rows);
  }
}

// The agent's rules as the rte_flow translator sees them: each IR rule with where the NIC
// executor placed it and, with --testpmd, the equivalent dpdk-testpmd commands (replayable
// on a real NIC: tests/hw/run.sh).
int NicRules(const Options& o) {
  absl::StatusOr<std::string> reply = QueryStatsSocket(o.stats_socket, "nic-rules");
  if (!reply.ok()) {
    fprintf(stderr, "sluicectl: %s\n", std::string(reply.status().message()).c_str());
    return kFailed;
  }
  if (reply->rfind("{\"error\"", 0) == 0) {
    fprintf(stderr, "sluicectl: the daemon does not list NIC rules (an agent does): %s\n",
            reply->c_str());
    return kFailed;
  }
  for (std::string_view line : SplitString(*reply, '\n')) {
    if (line.empty()) continue;
    if (o.testpmd || line[0] == '#') printf("%.*s\n", static_cast<int>(line.size()), line.data());
  }
  return kOk;
}

int StatsSocket(const Options& o) {
  if (o.socket.empty()) return Usage();
  absl::StatusOr<std::string> reply = QueryStatsSocket(o.socket, "stats");
  if (!reply.ok()) {
    fprintf(stderr, "sluicectl: %s\n", std::string(reply.status().message()).c_str());
    return kFailed;
  }
  if (o.output == "json") {
    fputs(reply->c_str(), stdout);
    return kOk;
  }
  nlohmann::json doc = nlohmann::json::parse(*reply, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    fprintf(stderr, "sluicectl: daemon sent something that is not JSON\n");
    return kFailed;
  }
  PrintStatsTable(doc);
  return kOk;
}

// ---------------------------------------------------------------------------------------
// get / health / mux / version over gRPC

// Asks a daemon which role it has (Agent or Mux service), via its Health call.
grpc::Status Identify(const Options& o, const std::string& target, v1::HealthResponse* health,
                      bool* is_mux) {
  auto channel = Dial(o, target);
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::Status s = v1::Agent::NewStub(channel)->Health(&context, v1::HealthRequest(), health);
    if (s.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
      *is_mux = false;
      return s;
    }
  }
  grpc::ClientContext context;
  SetDeadline(&context);
  *is_mux = true;
  return v1::Mux::NewStub(channel)->Health(&context, v1::HealthRequest(), health);
}

v1::Encap EncapFromName(const std::string& name) {
  return name == "gue" ? v1::ENCAP_GUE : name == "gre" ? v1::ENCAP_GRE : v1::ENCAP_IPIP;
}

const char* EncapName(v1::Encap encap) {
  return encap == v1::ENCAP_GUE ? "gue" : encap == v1::ENCAP_GRE ? "gre" : "ipip";
}

bool IsEncapName(const std::string& name) {
  return name == "ipip" || name == "gue" || name == "gre";
}

int GetMux(const Options& o, const std::string& what) {
  auto stub = v1::Mux::NewStub(Dial(o, o.socket));
  grpc::ClientContext context;
  SetDeadline(&context);
  if (what == "vips" || what == "backends") {
    v1::GetVipsResponse r;
    grpc::Status s = stub->GetVips(&context, v1::GetVipsRequest(), &r);
    if (!s.ok()) return Fail(o.socket, s);
    if (o.output == "json") {
      printf("%s\n", ToJson(r).c_str());
      return kOk;
    }
    std::vector<std::vector<std::string>> rows;
    if (what == "vips") {
      for (const v1::VipStatus& v : r.vips()) {
        uint32_t healthy = 0;
        for (const auto& b : v.backends()) healthy += b.healthy() ? 1 : 0;
        rows.push_back({StrCat(v.vip(), ":", v.port(), "/", Proto(v.protocol())),
                        SchedulerText(v.scheduler()), StrCat(v.backends_size()), StrCat(healthy),
                        StrCat(v.packets())});
      }
      PrintTable({"VIP", "SCHEDULER", "BACKENDS", "HEALTHY", "PACKETS"}, rows);
    } else {
      for (const v1::VipStatus& v : r.vips()) {
        for (const v1::BackendStatus& b : v.backends()) {
          rows.push_back({StrCat(v.vip(), ":", v.port(), "/", Proto(v.protocol())),
                          b.backend().dip(), b.backend().host(), StrCat(b.backend().weight()),
                          EncapName(b.backend().encap()),
                          b.healthy() ? "yes" : "no", StrCat(b.flows()), StrCat(b.packets())});
        }
      }
      PrintTable({"VIP", "DIP", "HOST", "WEIGHT", "ENCAP", "HEALTHY", "FLOWS", "PACKETS"}, rows);
    }
    printf("(config generation %lu)\n", static_cast<unsigned long>(r.config_generation()));
    return kOk;
  }
  v1::GetSnatRangesResponse r;
  grpc::Status s = stub->GetSnatRanges(&context, v1::GetSnatRangesRequest(), &r);
  if (!s.ok()) return Fail(o.socket, s);
  if (o.output == "json") {
    printf("%s\n", ToJson(r).c_str());
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const v1::SnatRange& range : r.ranges()) {
    rows.push_back({range.vip(), Proto(range.protocol()),
                    StrCat(range.port_start(), "-", range.port_start() + range.port_count() - 1),
                    range.host(), EncapName(range.encap()),
                    range.dynamic() ? "allocator" : "config"});
  }
  PrintTable({"VIP", "PROTOCOL", "PORTS", "HOST", "ENCAP", "FROM"}, rows);
  return kOk;
}

// The SNAT allocator's lease table, pools and muxes.
int GetSnatChunks(const Options& o) {
  v1::ListLeasesRequest request;
  request.set_host(o.host);
  v1::ListLeasesResponse r;
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Status s =
      v1::SnatAllocator::NewStub(Dial(o, o.socket))->ListLeases(&context, request, &r);
  if (!s.ok()) return Fail(o.socket, s);
  if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
  std::vector<std::vector<std::string>> rows;
  for (const v1::SnatChunk& c : r.chunks()) {
    rows.push_back({c.vip(), Proto(c.protocol()),
                    StrCat(c.port_start(), "-", c.port_start() + c.port_count() - 1), c.host(),
                    c.host_pa(), EncapName(c.encap()), c.dip()});
  }
  PrintTable({"VIP", "PROTOCOL", "PORTS", "HOST", "HOST_PA", "ENCAP", "DIP"}, rows);
  rows.clear();
  for (const v1::SnatPool& p : r.pools()) {
    rows.push_back({p.vip(), Proto(p.protocol()),
                    StrCat(p.port_start(), "-", p.port_start() + p.port_count() - 1),
                    StrCat(p.chunk_ports()), StrCat(p.chunks_leased(), "/", p.chunks())});
  }
  printf("\n");
  PrintTable({"POOL", "PROTOCOL", "PORTS", "CHUNK", "LEASED"}, rows);
  rows.clear();
  for (const v1::MuxSync& m : r.muxes()) {
    rows.push_back({m.address(), m.in_sync() ? "yes" : "no", StrCat(m.synced_generation()),
                    m.last_error()});
  }
  printf("\n");
  PrintTable({"MUX", "IN_SYNC", "GENERATION", "LAST_ERROR"}, rows);
  printf("(table generation %lu)\n", static_cast<unsigned long>(r.table_generation()));
  return kOk;
}

int GetAgent(const Options& o, const std::string& what) {
  auto stub = v1::Agent::NewStub(Dial(o, o.socket));
  grpc::ClientContext context;
  SetDeadline(&context);
  std::vector<std::vector<std::string>> rows;
  if (what == "endpoints") {
    v1::GetEndpointsResponse r;
    grpc::Status s = stub->GetEndpoints(&context, v1::GetEndpointsRequest(), &r);
    if (!s.ok()) return Fail(o.socket, s);
    if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
    for (const v1::Endpoint& ep : r.endpoints()) {
      rows.push_back({StrCat(ep.vip(), ":", ep.port(), "/", Proto(ep.protocol())),
                      StrCat(ep.dip(), ":", ep.dip_port())});
    }
    PrintTable({"VIP", "DIP"}, rows);
  } else if (what == "leases") {
    v1::GetLeasesResponse r;
    grpc::Status s = stub->GetLeases(&context, v1::GetLeasesRequest(), &r);
    if (!s.ok()) return Fail(o.socket, s);
    if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
    for (const v1::SnatLease& l : r.leases()) {
      rows.push_back({l.dip(), l.vip(), Proto(l.protocol()),
                      StrCat(l.port_start(), "-", l.port_start() + l.port_count() - 1),
                      l.dynamic() ? "allocator" : "config"});
    }
    PrintTable({"DIP", "VIP", "PROTOCOL", "PORTS", "FROM"}, rows);
  } else if (what == "vms") {
    v1::GetVmsResponse r;
    grpc::Status s = stub->GetVms(&context, v1::GetVmsRequest(), &r);
    if (!s.ok()) return Fail(o.socket, s);
    if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
    for (const v1::VmStatus& vm : r.vms()) {
      std::string port = vm.hotplugged() ? "hotplug" : "boot";
      if (vm.has_dpdk_port()) port += StrCat(":", vm.dpdk_port());
      rows.push_back({vm.vm().name(), vm.vm().dip(), vm.vm().mac(), vm.vm().pa(),
                      vm.attached() ? "yes" : "no", port, StrCat(vm.vm().endpoints_size()),
                      StrCat(vm.snat_tcp_ports_in_use(), "/", vm.snat_tcp_ports_leased()),
                      StrCat(vm.rx_packets()), StrCat(vm.tx_packets())});
    }
    PrintTable({"VM", "DIP", "MAC", "PA", "ATTACHED", "PORT", "ENDPOINTS", "SNAT_TCP", "RX", "TX"},
               rows);
  } else {  // flows
    v1::GetFlowsRequest request;
    request.set_limit(o.limit);
    request.set_dip(o.dip);
    v1::GetFlowsResponse r;
    grpc::Status s = stub->GetFlows(&context, request, &r);
    if (!s.ok()) return Fail(o.socket, s);
    if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
    for (const v1::Flow& f : r.flows()) {
      rows.push_back({f.kind() == v1::Flow::KIND_SNAT ? "snat" : "inbound", Proto(f.protocol()),
                      StrCat(f.dip(), ":", f.dip_port()), StrCat(f.vip(), ":", f.vip_port()),
                      StrCat(f.remote(), ":", f.remote_port()), f.state(),
                      f.fastpath_pa().empty() ? "-" : f.fastpath_pa(), StrCat(f.idle_ms()),
                      f.nic().empty() ? "-" : f.nic(), StrCat(f.nic_packets()),
                      StrCat(f.nic_bytes())});
    }
    PrintTable({"KIND", "PROTO", "DIP", "VIP", "REMOTE", "STATE", "FASTPATH", "IDLE_MS", "NIC",
                "NIC_PKTS", "NIC_BYTES"},
               rows);
    printf("(%d of %lu flows)\n", r.flows_size(), static_cast<unsigned long>(r.total()));
  }
  return kOk;
}

void PrintCounters(const google::protobuf::RepeatedPtrField<v1::Counter>& counters,
                   bool skip_zero) {
  std::vector<std::vector<std::string>> rows;
  for (const v1::Counter& c : counters) {
    if (skip_zero && c.value() == 0) continue;
    rows.push_back({c.name(), StrCat(c.value())});
  }
  for (const auto& row : rows) printf("  %-28s %s\n", row[0].c_str(), row[1].c_str());
}

// A mux's offloaded flows (the software flow cache's are not listed).
int GetMuxFlows(const Options& o) {
  v1::GetMuxFlowsRequest request;
  request.set_limit(o.limit);
  v1::GetMuxFlowsResponse r;
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Status s = v1::Mux::NewStub(Dial(o, o.socket))->GetFlows(&context, request, &r);
  if (!s.ok()) return Fail(o.socket, s);
  if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
  std::vector<std::vector<std::string>> rows;
  for (const v1::MuxFlow& f : r.flows()) {
    rows.push_back({Proto(f.protocol()), StrCat(f.client(), ":", f.client_port()),
                    StrCat(f.vip(), ":", f.vip_port()), f.host_pa(), f.nic(),
                    StrCat(f.nic_packets()), StrCat(f.nic_bytes())});
  }
  PrintTable({"PROTO", "CLIENT", "VIP", "HOST_PA", "NIC", "NIC_PKTS", "NIC_BYTES"}, rows);
  printf("(%d of %lu flows offloaded to the NIC; the flow cache's are not listed)\n",
         r.flows_size(), static_cast<unsigned long>(r.total()));
  return kOk;
}

int GetStats(const Options& o) {
  v1::HealthResponse health;
  bool is_mux = false;
  grpc::Status s = Identify(o, o.socket, &health, &is_mux);
  if (!s.ok()) return Fail(o.socket, s);
  grpc::ClientContext context;
  SetDeadline(&context);
  if (is_mux) {
    v1::MuxStats r;
    s = v1::Mux::NewStub(Dial(o, o.socket))->GetStats(&context, v1::GetStatsRequest(), &r);
    if (!s.ok()) return Fail(o.socket, s);
    if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
    printf("mux %s: ready=%s draining=%s bgp=%s generation=%lu\n", r.name().c_str(),
           r.ready() ? "yes" : "no", r.draining() ? "yes" : "no", r.bgp_session().c_str(),
           static_cast<unsigned long>(r.config_generation()));
    PrintCounters(r.counters(), false);
    printf("drops (non-zero):\n");
    PrintCounters(r.drops(), true);
    return kOk;
  }
  v1::AgentStats r;
  s = v1::Agent::NewStub(Dial(o, o.socket))->GetStats(&context, v1::GetStatsRequest(), &r);
  if (!s.ok()) return Fail(o.socket, s);
  if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
  printf("agent %s: ready=%s generation=%lu\n", r.name().c_str(), r.ready() ? "yes" : "no",
         static_cast<unsigned long>(r.config_generation()));
  PrintCounters(r.counters(), false);
  printf("drops (non-zero):\n");
  PrintCounters(r.drops(), true);
  return kOk;
}

int MuxCommand(const Options& o, const std::string& what) {
  auto stub = v1::Mux::NewStub(Dial(o, o.socket));
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::DrainResponse r;
  grpc::Status s = what == "drain" ? stub->Drain(&context, v1::DrainRequest(), &r)
                                   : stub->Resume(&context, v1::ResumeRequest(), &r);
  if (!s.ok()) return Fail(o.socket, s);
  if (o.output == "json") return printf("%s\n", ToJson(r).c_str()), kOk;
  printf("%s: %s\n", o.socket.c_str(),
         r.draining() ? "draining (VIPs withdrawn)" : "serving (VIPs announced)");
  return kOk;
}

// ---------------------------------------------------------------------------------------
// cloud.yaml

struct Daemon {
  std::string name;
  std::string target;
  /// Agents: what the host decapsulates (ipip, gue, or gre for a host on Open vSwitch): the
  /// default of its backends' encap and how the muxes send it its SNAT replies.
  std::string encap = "ipip";
};


struct CloudBackend {
  uint32_t dip = 0;
  uint16_t dip_port = 0;
  uint32_t weight = 1;
  std::string encap;   ///< "" = the agent's encap.
  uint32_t host = 0;  ///< Explicit underlay address; 0 = the DIP's VM PA from its agent.
  std::optional<v1::HealthCheck> health;  ///< The agent's check of this DIP (endpoint health).
  ConfigNode node;
};

// A backend's `health:` (the agent YAML's keys, hostagent/health.h); ranges and cross-field
// rules are checked by the agent (apply's dry run) and named there.
v1::HealthCheck ReadCloudHealth(ConfigNode& h) {
  h.AllowOnly({"type", "port", "path", "host", "expect_status", "interval_ms", "timeout_ms",
               "rise", "fall", "jitter_ms", "netns"});
  static const std::map<std::string, v1::HealthCheckType> kTypes = {
      {"tcp", v1::HEALTH_CHECK_TYPE_TCP},
      {"http", v1::HEALTH_CHECK_TYPE_HTTP},
      {"https", v1::HEALTH_CHECK_TYPE_HTTPS},
      {"mysql", v1::HEALTH_CHECK_TYPE_MYSQL}};
  v1::HealthCheck out;
  const std::string type = h.String("type");
  auto it = kTypes.find(type);
  if (it != kTypes.end()) {
    out.set_type(it->second);
  } else if (h.status().ok()) {
    h.Fail("type", StrCat("'", type, "' is not a health check type (tcp, http, https or mysql)"));
  }
  out.set_port(static_cast<uint32_t>(h.OptionalUint("port", 0, 1, 65535)));
  out.set_path(h.OptionalString("path", ""));
  out.set_host(h.OptionalString("host", ""));
  out.set_expect_status(static_cast<uint32_t>(h.OptionalUint("expect_status", 0, 100, 599)));
  out.set_interval_ms(static_cast<uint32_t>(h.OptionalUint("interval_ms", 0, 10, 3600 * 1000)));
  out.set_timeout_ms(static_cast<uint32_t>(h.OptionalUint("timeout_ms", 0, 1, 600 * 1000)));
  out.set_rise(static_cast<uint32_t>(h.OptionalUint("rise", 0, 1, 1000)));
  out.set_fall(static_cast<uint32_t>(h.OptionalUint("fall", 0, 1, 1000)));
  out.set_jitter_ms(static_cast<uint32_t>(h.OptionalUint("jitter_ms", 0, 0, 1800 * 1000)));
  out.set_netns(h.OptionalString("netns", ""));
  return out;
}

struct CloudVip {
  uint32_t vip = 0;
  uint16_t port = 0;
  uint8_t proto = 6;
  std::string scheduler = "maglev";
  std::vector<CloudBackend> backends;
};

struct CloudLease {
  uint32_t dip = 0;
  uint32_t vip = 0;
  uint8_t proto = 6;
  uint16_t port_start = 0;
  uint16_t port_count = 0;
  ConfigNode node;
};

struct Cloud {
  std::vector<Daemon> muxes;
  std::vector<Daemon> agents;
  std::vector<CloudVip> vips;
  std::vector<CloudLease> leases;
};

absl::StatusOr<Cloud> ReadCloud(ConfigNode& root) {
  Cloud cloud;
  root.AllowOnly({"muxes", "agents", "vips", "snat"});
  auto daemons = [&root](const char* key, std::vector<Daemon>* out) {
    const bool agents = std::string(key) == "agents";
    std::set<std::string> names;
    for (ConfigNode& d : root.Sequence(key, false)) {
      if (agents) {
        d.AllowOnly({"name", "grpc", "encap"});
      } else {
        d.AllowOnly({"name", "grpc"});
      }
      Daemon daemon{.name = d.String("name"), .target = d.String("grpc")};
      if (agents) {
        daemon.encap = d.OptionalString("encap", "ipip");
        if (!IsEncapName(daemon.encap)) {
          d.Fail("encap",
                 StrCat("'", daemon.encap, "' is not an encapsulation (ipip, gue or gre)"));
        }
      }
      if (d.status().ok() && !names.insert(daemon.name).second) {
        d.Fail("name", StrCat("'", daemon.name, "' appears twice"));
      }
      out->push_back(daemon);
    }
  };
  daemons("muxes", &cloud.muxes);
  daemons("agents", &cloud.agents);
  std::set<std::tuple<uint32_t, uint16_t, uint8_t>> seen;
  for (ConfigNode& v : root.Sequence("vips", false)) {
    v.AllowOnly({"vip", "port", "protocol", "scheduler", "backends"});
    CloudVip vip;
    vip.vip = v.Ipv4("vip");
    vip.port = static_cast<uint16_t>(v.Uint("port", 1, 65535));
    vip.proto = v.L4Protocol("protocol");
    vip.scheduler = v.OptionalString("scheduler", "maglev");
    if (vip.scheduler != "maglev" && vip.scheduler != "weighted-round-robin" &&
        vip.scheduler != "source-hash") {
      v.Fail("scheduler", StrCat("'", vip.scheduler,
                                 "' is not a scheduler (maglev, weighted-round-robin, "
                                 "source-hash)"));
    }
    if (v.status().ok() && !seen.insert({vip.vip, vip.port, vip.proto}).second) {
      v.Fail("vip", StrCat(EndpointKey(vip.vip, vip.port, vip.proto), " appears twice"));
    }
    std::set<uint32_t> dips;
    for (ConfigNode& b : v.Sequence("backends", false)) {
      b.AllowOnly({"dip", "port", "weight", "encap", "host", "health"});
      CloudBackend backend{.node = b};
      backend.dip = b.Ipv4("dip");
      backend.dip_port = static_cast<uint16_t>(b.OptionalUint("port", vip.port, 1, 65535));
      backend.weight = static_cast<uint32_t>(b.OptionalUint("weight", 1, 0, 65535));
      backend.encap = b.OptionalString("encap", "");
      if (b.Has("encap") && !IsEncapName(backend.encap)) {
        b.Fail("encap",
               StrCat("'", backend.encap, "' is not an encapsulation (ipip, gue or gre)"));
      }
      if (b.Has("host")) backend.host = b.Ipv4("host");
      if (b.Has("health")) {
        ConfigNode h = b.Map("health");
        backend.health = ReadCloudHealth(h);
      }
      if (b.status().ok() && !dips.insert(backend.dip).second) {
        b.Fail("dip", StrCat(Ipv4ToString(backend.dip), " appears twice in this VIP"));
      }
      vip.backends.push_back(std::move(backend));
    }
    cloud.vips.push_back(std::move(vip));
  }
  for (ConfigNode& l : root.Sequence("snat", false)) {
    l.AllowOnly({"dip", "vip", "protocol", "port_start", "port_count"});
    CloudLease lease{.node = l};
    lease.dip = l.Ipv4("dip");
    lease.vip = l.Ipv4("vip");
    lease.proto = l.L4Protocol("protocol");
    lease.port_start = static_cast<uint16_t>(l.Uint("port_start", 1, 65535));
    lease.port_count = static_cast<uint16_t>(l.Uint("port_count", 1, 65535));
    if (l.status().ok() && uint32_t{lease.port_start} + lease.port_count > 65536) {
      l.Fail("port_count", "the range runs past port 65535");
    }
    for (const CloudLease& other : cloud.leases) {
      if (l.status().ok() && other.vip == lease.vip && other.proto == lease.proto &&
          lease.port_start < other.port_start + other.port_count &&
          other.port_start < lease.port_start + lease.port_count) {
        l.Fail("port_start",
               StrCat("ports ", lease.port_start, "..", lease.port_start + lease.port_count - 1,
                      " overlap the lease of ", Ipv4ToString(other.dip), " (ports ",
                      other.port_start, "..", other.port_start + other.port_count - 1, ")"));
      }
    }
    cloud.leases.push_back(std::move(lease));
  }
  if (root.status().ok() && cloud.muxes.empty() && cloud.agents.empty()) {
    root.Fail("muxes", "name at least one mux or agent to push to");
  }
  if (!root.status().ok()) return root.status();
  return cloud;
}

// What apply reports per daemon.
struct Outcome {
  std::string daemon;
  std::string what;  ///< "endpoints", "snat leases", "vips", "snat ranges"
  v1::ChangeSummary changes;
};

void PrintOutcome(const Outcome& o, bool dry_run) {
  std::string line = StrCat(o.daemon, ": ", o.what, ": ");
  if (o.changes.added_size() + o.changes.removed_size() + o.changes.changed_size() == 0) {
    line += "unchanged";
  } else {
    std::vector<std::string> parts;
    for (const std::string& k : o.changes.added()) parts.push_back("+" + k);
    for (const std::string& k : o.changes.removed()) parts.push_back("-" + k);
    for (const std::string& k : o.changes.changed()) parts.push_back("~" + k);
    for (size_t i = 0; i < parts.size(); ++i) line += (i ? " " : "") + parts[i];
  }
  line += dry_run ? " (dry run)" : StrCat(" (generation ", o.changes.config_generation(), ")");
  printf("%s\n", line.c_str());
}

int Apply(const Options& o) {
  if (o.file.empty()) return Usage();
  absl::StatusOr<ConfigNode> root = ConfigNode::LoadFile(o.file);
  if (!root.ok()) {
    fprintf(stderr, "sluicectl: %s\n", std::string(root.status().message()).c_str());
    return kUsage;
  }
  absl::StatusOr<Cloud> cloud = ReadCloud(*root);
  if (!cloud.ok()) {
    fprintf(stderr, "sluicectl: %s\n", std::string(cloud.status().message()).c_str());
    return kUsage;
  }
  // Where each DIP lives: ask every agent for its VMs.
  struct VmHome {
    size_t agent;
    uint32_t pa;
  };
  std::map<uint32_t, VmHome> homes;
  std::vector<uint32_t> host_pas;
  std::vector<std::unique_ptr<v1::Agent::Stub>> agents;
  for (size_t a = 0; a < cloud->agents.size(); ++a) {
    const Daemon& d = cloud->agents[a];
    agents.push_back(v1::Agent::NewStub(Dial(o, d.target)));
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetVmsResponse vms;
    grpc::Status s = agents.back()->GetVms(&context, v1::GetVmsRequest(), &vms);
    if (!s.ok()) return Fail(StrCat("agent ", d.name, " (", d.target, ")"), s);
    host_pas.push_back(*ParseIpv4(vms.host_pa()));
    for (const v1::VmStatus& vm : vms.vms()) {
      const uint32_t dip = *ParseIpv4(vm.vm().dip());
      auto [it, inserted] = homes.emplace(dip, VmHome{a, *ParseIpv4(vm.vm().pa())});
      if (!inserted) {
        fprintf(stderr, "sluicectl: DIP %s is a VM of both agent %s and agent %s\n",
                vm.vm().dip().c_str(), cloud->agents[it->second.agent].name.c_str(),
                d.name.c_str());
        return kFailed;
      }
    }
  }
  // Each backend and lease must be a VM of a listed agent ("a backend on an unknown host").
  std::string known;
  for (const auto& [dip, home] : homes) {
    known += StrCat(known.empty() ? "" : ", ", Ipv4ToString(dip), " on ",
                    cloud->agents[home.agent].name);
  }
  for (CloudVip& vip : cloud->vips) {
    for (CloudBackend& b : vip.backends) {
      if (homes.count(b.dip) == 0) {
        b.node.Fail("dip", StrCat(Ipv4ToString(b.dip), " is not a VM of any agent listed (",
                                  known.empty() ? "none" : known, ")"));
      }
    }
  }
  for (CloudLease& l : cloud->leases) {
    if (homes.count(l.dip) == 0) {
      l.node.Fail("dip", StrCat(Ipv4ToString(l.dip), " is not a VM of any agent listed (",
                                known.empty() ? "none" : known, ")"));
    }
  }
  if (!root->status().ok()) {
    fprintf(stderr, "sluicectl: %s\n", std::string(root->status().message()).c_str());
    return kUsage;
  }

  // Desired state of every daemon.
  std::vector<v1::SetEndpointsRequest> endpoints(cloud->agents.size());
  std::vector<v1::SetSnatLeasesRequest> leases(cloud->agents.size());
  v1::SetVipsRequest vips;
  v1::SetSnatRangesRequest ranges;
  for (const CloudVip& vip : cloud->vips) {
    v1::Vip* v = vips.add_vips();
    v->set_vip(Ipv4ToString(vip.vip));
    v->set_port(vip.port);
    v->set_protocol(ProtocolToProto(vip.proto));
    v->set_scheduler(vip.scheduler == "source-hash"            ? v1::SCHEDULER_SOURCE_HASH
                     : vip.scheduler == "weighted-round-robin" ? v1::SCHEDULER_WEIGHTED_ROUND_ROBIN
                                                               : v1::SCHEDULER_MAGLEV);
    for (const CloudBackend& b : vip.backends) {
      const VmHome& home = homes.at(b.dip);
      v1::Backend* backend = v->add_backends();
      backend->set_dip(Ipv4ToString(b.dip));
      backend->set_host(Ipv4ToString(b.host != 0 ? b.host : home.pa));
      backend->set_weight(b.weight);
      backend->set_encap(
          EncapFromName(b.encap.empty() ? cloud->agents[home.agent].encap : b.encap));
      v1::Endpoint* ep = endpoints[home.agent].add_endpoints();
      ep->set_vip(Ipv4ToString(vip.vip));
      ep->set_port(vip.port);
      ep->set_protocol(ProtocolToProto(vip.proto));
      ep->set_dip(Ipv4ToString(b.dip));
      ep->set_dip_port(b.dip_port);
      if (b.health) *ep->mutable_health() = *b.health;
    }
  }
  for (const CloudLease& l : cloud->leases) {
    const size_t agent = homes.at(l.dip).agent;
    v1::SnatLease* lease = leases[agent].add_leases();
    lease->set_dip(Ipv4ToString(l.dip));
    lease->set_vip(Ipv4ToString(l.vip));
    lease->set_protocol(ProtocolToProto(l.proto));
    lease->set_port_start(l.port_start);
    lease->set_port_count(l.port_count);
    v1::SnatRange* range = ranges.add_ranges();
    range->set_vip(Ipv4ToString(l.vip));
    range->set_protocol(ProtocolToProto(l.proto));
    range->set_port_start(l.port_start);
    range->set_port_count(l.port_count);
    range->set_host(Ipv4ToString(host_pas[agent]));
    range->set_encap(EncapFromName(cloud->agents[agent].encap));
  }

  std::vector<std::unique_ptr<v1::Mux::Stub>> muxes;
  for (const Daemon& d : cloud->muxes) muxes.push_back(v1::Mux::NewStub(Dial(o, d.target)));
  std::vector<Outcome> outcomes;
  auto call = [&](const std::string& who, const std::string& what, auto&& rpc) {
    grpc::ClientContext context;
    SetDeadline(&context);
    Outcome out{.daemon = who, .what = what};
    grpc::Status s = rpc(&context, &out.changes);
    if (!s.ok()) {
      fprintf(stderr, "sluicectl: %s: %s: %s\n", who.c_str(), what.c_str(), Describe(s).c_str());
      return false;
    }
    outcomes.push_back(std::move(out));
    return true;
  };
  auto report = [&](int code) {
    if (o.output == "json") {
      nlohmann::json doc = {{"ok", code == kOk}, {"dry_run", o.dry_run}};
      nlohmann::json list = nlohmann::json::array();
      for (const Outcome& out : outcomes) {
        list.push_back({{"daemon", out.daemon},
                        {"what", out.what},
                        {"added", out.changes.added()},
                        {"removed", out.changes.removed()},
                        {"changed", out.changes.changed()},
                        {"unchanged", out.changes.unchanged()},
                        {"config_generation", out.changes.config_generation()}});
      }
      doc["changes"] = list;
      printf("%s\n", doc.dump(2).c_str());
    } else {
      for (const Outcome& out : outcomes) PrintOutcome(out, o.dry_run);
    }
    return code;
  };

  // 1. Every daemon checks its part first (dry run): a refusal anywhere changes nothing.
  for (size_t a = 0; a < agents.size(); ++a) {
    const std::string who = "agent " + cloud->agents[a].name;
    endpoints[a].set_dry_run(true);
    leases[a].set_dry_run(true);
    if (!call(who, "endpoints",
              [&](auto* c, auto* r) { return agents[a]->SetEndpoints(c, endpoints[a], r); }) ||
        !call(who, "snat leases",
              [&](auto* c, auto* r) { return agents[a]->SetSnatLeases(c, leases[a], r); })) {
      return report(kFailed);
    }
    endpoints[a].set_dry_run(false);
    leases[a].set_dry_run(false);
  }
  // The SNAT allocator's chunks (dynamic ranges) are not cloud.yaml's to replace: each mux
  // keeps its own.
  auto ranges_for = [&](size_t m, bool dry_run, v1::SetSnatRangesRequest* out) {
    *out = ranges;
    out->set_dry_run(dry_run);
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetSnatRangesResponse now;
    grpc::Status s = muxes[m]->GetSnatRanges(&context, v1::GetSnatRangesRequest(), &now);
    if (!s.ok()) return Fail("mux " + cloud->muxes[m].name, s), false;
    for (const v1::SnatRange& r : now.ranges()) {
      if (r.dynamic()) *out->add_ranges() = r;
    }
    return true;
  };
  vips.set_dry_run(true);
  for (size_t m = 0; m < muxes.size(); ++m) {
    const std::string who = "mux " + cloud->muxes[m].name;
    v1::SetSnatRangesRequest mux_ranges;
    if (!ranges_for(m, true, &mux_ranges)) return report(kFailed);
    if (!call(who, "vips", [&](auto* c, auto* r) { return muxes[m]->SetVips(c, vips, r); }) ||
        !call(who, "snat ranges",
              [&](auto* c, auto* r) { return muxes[m]->SetSnatRanges(c, mux_ranges, r); })) {
      return report(kFailed);
    }
  }
  vips.set_dry_run(false);
  if (o.dry_run) return report(kOk);
  outcomes.clear();

  // 2. Agents learn new endpoints before any mux sends them traffic: they first get the
  //    union of what they serve now and what they will serve.
  for (size_t a = 0; a < agents.size(); ++a) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetEndpointsResponse now;
    grpc::Status s = agents[a]->GetEndpoints(&context, v1::GetEndpointsRequest(), &now);
    if (!s.ok()) return Fail("agent " + cloud->agents[a].name, s), report(kFailed);
    // An endpoint is one per VIP:port/protocol and DIP; one in both sets (its health check
    // may differ) is taken as wanted.
    auto key = [](const v1::Endpoint& ep) {
      return StrCat(ep.vip(), ":", ep.port(), "/", static_cast<int>(ep.protocol()), "->", ep.dip());
    };
    v1::SetEndpointsRequest both = endpoints[a];
    std::set<std::string> wanted;
    for (const v1::Endpoint& ep : endpoints[a].endpoints()) wanted.insert(key(ep));
    bool adds = false;
    for (const v1::Endpoint& ep : now.endpoints()) {
      if (wanted.count(key(ep)) == 0) *both.add_endpoints() = ep;
    }
    std::set<std::string> have;
    for (const v1::Endpoint& ep : now.endpoints()) have.insert(ep.SerializeAsString());
    for (const v1::Endpoint& ep : endpoints[a].endpoints()) {
      adds = adds || have.count(ep.SerializeAsString()) == 0;
    }
    if (!adds) continue;
    if (!call("agent " + cloud->agents[a].name, "endpoints (adding)",
              [&](auto* c, auto* r) { return agents[a]->SetEndpoints(c, both, r); })) {
      return report(kFailed);
    }
  }
  // 3. Muxes switch to the new VIPs, backends and SNAT ranges.
  for (size_t m = 0; m < muxes.size(); ++m) {
    const std::string who = "mux " + cloud->muxes[m].name;
    v1::SetSnatRangesRequest mux_ranges;
    if (!ranges_for(m, false, &mux_ranges)) return report(kFailed);
    if (!call(who, "snat ranges",
              [&](auto* c, auto* r) { return muxes[m]->SetSnatRanges(c, mux_ranges, r); }) ||
        !call(who, "vips", [&](auto* c, auto* r) { return muxes[m]->SetVips(c, vips, r); })) {
      return report(kFailed);
    }
  }
  // 4. Agents drop what no mux sends them any more, and take their SNAT leases.
  for (size_t a = 0; a < agents.size(); ++a) {
    const std::string who = "agent " + cloud->agents[a].name;
    if (!call(who, "endpoints",
              [&](auto* c, auto* r) { return agents[a]->SetEndpoints(c, endpoints[a], r); }) ||
        !call(who, "snat leases",
              [&](auto* c, auto* r) { return agents[a]->SetSnatLeases(c, leases[a], r); })) {
      return report(kFailed);
    }
  }
  return report(kOk);
}

// ---------------------------------------------------------------------------------------

int Health(const Options& o) {
  std::vector<Daemon> daemons;
  if (!o.socket.empty()) {
    daemons.push_back({.name = o.socket, .target = o.socket});
  } else if (!o.file.empty()) {
    absl::StatusOr<ConfigNode> root = ConfigNode::LoadFile(o.file);
    absl::StatusOr<Cloud> cloud = root.ok() ? ReadCloud(*root) : root.status();
    if (!cloud.ok()) {
      fprintf(stderr, "sluicectl: %s\n", std::string(cloud.status().message()).c_str());
      return kUsage;
    }
    for (const Daemon& d : cloud->muxes) daemons.push_back(d);
    for (const Daemon& d : cloud->agents) daemons.push_back(d);
  } else {
    return Usage();
  }
  int code = kOk;
  std::vector<std::vector<std::string>> rows;
  nlohmann::json list = nlohmann::json::array();
  for (const Daemon& d : daemons) {
    v1::HealthResponse h;
    bool is_mux = false;
    grpc::Status s = Identify(o, d.target, &h, &is_mux);
    std::string problems;
    for (const std::string& p : h.problems()) problems += (problems.empty() ? "" : "; ") + p;
    if (!s.ok()) {
      code = kFailed;
      problems = Describe(s);
    } else if (h.state() != v1::HealthResponse::STATE_SERVING) {
      code = kFailed;
    }
    const std::string state = s.ok() ? StateText(h.state()) : "unreachable";
    rows.push_back({d.name, s.ok() ? h.role() : "?", s.ok() ? h.name() : "?", state,
                    s.ok() ? StrCat(h.config_generation()) : "-", problems});
    list.push_back({{"daemon", d.name},
                    {"role", h.role()},
                    {"name", h.name()},
                    {"state", state},
                    {"version", h.version()},
                    {"config_generation", h.config_generation()},
                    {"problems", problems}});
  }
  if (o.output == "json") {
    printf("%s\n", list.dump(2).c_str());
  } else {
    PrintTable({"DAEMON", "ROLE", "NAME", "STATE", "GENERATION", "PROBLEMS"}, rows);
  }
  return code;
}

int Version(const Options& o) {
  printf("sluicectl %s\n", SLUICE_VERSION);
  if (o.socket.empty()) return kOk;
  v1::HealthResponse h;
  bool is_mux = false;
  grpc::Status s = Identify(o, o.socket, &h, &is_mux);
  if (!s.ok()) return Fail(o.socket, s);
  printf("%s %s: %s\n", is_mux ? "sluice-mux" : "sluice-agent", h.name().c_str(),
         h.version().c_str());
  return kOk;
}

int Main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string command = argv[1];
  if (command == "top") return Top(std::vector<std::string>(argv + 2, argv + argc));
  Options o;
  if (!ParseOptions(argc, argv, 2, &o)) return Usage();
  if (!o.tls.empty()) {
    absl::StatusOr<TlsPem> pem = LoadTlsPem(o.tls, "--tls-");
    if (!pem.ok()) {
      fprintf(stderr, "sluicectl: %s\n", std::string(pem.status().message()).c_str());
      return kUsage;
    }
    o.dial.tls = std::move(*pem);
  }
  if (!o.tls_server_name.empty() && !o.dial.tls) {
    fprintf(stderr, "sluicectl: --tls-server-name needs TLS (--tls-ca and/or --tls-cert)\n");
    return kUsage;
  }
  o.dial.server_name = o.tls_server_name;
  if (command == "version" && o.args.empty()) return Version(o);
  if (command == "stats" && o.args.empty()) return StatsSocket(o);
  if (command == "apply" && o.args.empty()) return Apply(o);
  if (command == "health" && o.args.empty()) return Health(o);
  if (command == "get" && o.args.size() == 1 && o.args[0] == "nic-rules" &&
      !o.stats_socket.empty()) {
    return NicRules(o);
  }
  if (command == "get" && o.args.size() == 1 && !o.socket.empty()) {
    const std::string& what = o.args[0];
    if (what == "vips" || what == "backends" || what == "snat-ranges") return GetMux(o, what);
    if (what == "flows") {
      v1::HealthResponse health;
      bool is_mux = false;
      grpc::Status s = Identify(o, o.socket, &health, &is_mux);
      if (!s.ok()) return Fail(o.socket, s);
      if (is_mux) return GetMuxFlows(o);
    }
    if (what == "endpoints" || what == "leases" || what == "flows" || what == "vms") {
      return GetAgent(o, what);
    }
    if (what == "stats") return GetStats(o);
    if (what == "snat-chunks") return GetSnatChunks(o);
  }
  if (command == "mux" && o.args.size() == 1 && !o.socket.empty() &&
      (o.args[0] == "drain" || o.args[0] == "resume")) {
    return MuxCommand(o, o.args[0]);
  }
  return Usage();
}

}  // namespace
}  // namespace sluice::ctl

int main(int argc, char** argv) { return sluice::ctl::Main(argc, argv); }
