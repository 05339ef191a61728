#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/metric_family.h>

namespace sluice::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Shaped like hostagent/main.cc StatsJson.
const char kAgentStats[] = R"json({
  "role": "agent", "name": "host1", "ready": true, "rx_packets": 120, "tx_packets": 118,
  "inbound_packets": 40, "inbound_gue_packets": 2, "dsr_return_packets": 38,
  "stateful_return_packets": 0, "snat_out_packets": 5, "snat_in_packets": 4,
  "fastpath_packets": 0, "rejects_sent": 1, "executor": "software", "rules_installed": 6,
  "executor_rx_packets": 80,
  "flows": {"state_file": "(memory)", "capacity": 65536, "active": 3, "created": 9,
            "expired": 6, "restored_at_start": 0, "kept_at_start": 0},
  "fastpath": {"enabled": true, "redirects_received": 2, "redirects_applied_source": 1,
               "redirects_applied_destination": 1},
  "snat_allocator": {"enabled": true, "address": "unix:/run/snatd.sock", "chunks_requested": 4,
                     "chunks_granted": 3, "chunks_refused": 1, "chunks_returned": 2,
                     "chunks_adopted": 0, "return_errors": 0, "chunks_active": 1,
                     "chunks_draining": 0, "last_error": "",
                     "chunks": [{"dip": "10.1.0.4", "port_start": 21000, "state": "active"}]},
  "drops": {"malformed": 0, "truncated": 2, "no_rule": 7, "spoofed_source": 1},
  "vms": [{"name": "vm1", "dip": "10.1.0.1", "pa": "10.101.0.31", "rx_packets": 50,
           "tx_packets": 45, "snat_tcp_ports": "3/64", "snat_udp_ports": "0/0",
           "snat_ports_exhausted": 0}],
  "dip_health": [{"dip": "10.1.0.1", "state": "unhealthy", "reason": "refused"},
                 {"dip": "10.1.0.2", "state": "deciding", "reason": ""},
                 {"dip": "10.1.0.3", "state": "unchecked", "reason": ""}],
  "health_checks": [{"dip": "10.1.0.1", "check": "http 10.1.0.1:8080/health",
                     "state": "unhealthy", "probes": 42, "last_result": "refused"}],
  "health_reports": [{"mux": "mux1", "target": "unix:/run/mux1.sock", "in_sync": true,
                      "pushes_ok": 5, "pushes_failed": 2, "resyncs": 1,
                      "last_ok_ms_ago": 10, "last_error": "unavailable"}],
  "nic": {"rules": 3, "nic_packets": 1200, "nic_bytes": 96000, "count_query_errors": 1,
          "closes_to_software": 4, "close_rules_refused": ""},
  "some_new_counter": 17
})json";

// Shaped like mux_lite/main.cc StatsJson.
const char kMuxStats[] = R"json({
  "role": "mux", "name": "mux1", "ready": true, "draining": false, "polling": true,
  "rx_packets": 1000, "tx_packets": 990, "vip_packets": 995, "new_flows": 12,
  "cached_flow_packets": 983, "flow_table_capacity": 2048, "flow_table_live": 12,
  "flow_table_evictions": 0, "bytes_per_flow": 64, "workers": 2,
  "worker_rx_packets": [600, 400],
  "drops": {"no_backend": 3, "ttl_exceeded": 0},
  "bgp": {"enabled": true, "session": "established", "announced_vips": 2, "errors": 0,
          "last_error": ""},
  "flow_offload": {"offered": 10, "nic": 0, "partial": 0, "software": 10, "queue_full": 0,
                   "aged_out": 0, "last_refusal": "ENOTSUP", "nic_packets": 70,
                   "nic_bytes": 7000, "count_query_errors": 0, "closes_to_software": 2},
  "reload": {"reloads": 1, "errors": 0, "last_error": ""},
  "config_generation": 2,
  "vips": [{"vip": "10.200.0.10", "port": 80, "protocol": "tcp", "scheduler": "maglev",
            "packets": 995}],
  "backend_health": {"healthy": 1, "unhealthy": 1, "unhealthy_dips": 1},
  "backends": [{"vip": "10.200.0.10:80", "dip": "10.1.0.1", "host": "10.101.0.31",
                "weight": 1, "encap": "ipip", "packets": 500, "flows": 6, "healthy": true,
                "health_reason": ""},
               {"vip": "10.200.0.10:80", "dip": "10.1.0.4", "host": "10.101.0.34",
                "weight": 0, "encap": "ipip", "packets": 0, "flows": 0, "healthy": false,
                "health_reason": "refused"}]
})json";

std::string Text(const char* json) {
  auto families = FamiliesFromStats(json);
  EXPECT_TRUE(families.ok()) << families.status();
  return families.ok() ? TextFormat(*families) : "";
}

TEST(MetricsTest, AgentDropsFlowsRulesAndSnatPorts) {
  std::string text = Text(kAgentStats);
  EXPECT_THAT(text, HasSubstr("# TYPE sluice_agent_drops_total counter\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_drops_total{reason=\"no_rule\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_drops_total{reason=\"spoofed_source\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_flows 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_flows_created_total 9\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_rules{executor=\"software\",level=\"software\"} 6\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_snat_ports_in_use{vm=\"vm1\",protocol=\"tcp\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_snat_ports_free{vm=\"vm1\",protocol=\"tcp\"} 61\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_ready 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_info{name=\"host1\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("sluice_agent_fastpath_redirects_applied_total{side=\"source\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_snat_chunks_granted_total 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_snat_chunks_refused_total 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_snat_chunks_returned_total 2\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_snat_chunks_active 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE sluice_agent_nic_offloaded_packets_total counter\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_nic_offloaded_packets_total 1200\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_nic_offloaded_bytes_total 96000\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_nic_count_query_errors_total 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_nic_closes_to_software_total 4\n"));
  // A field the table does not know yet is still exported, untyped.
  EXPECT_THAT(text, HasSubstr("# TYPE sluice_agent_some_new_counter untyped\n"));
  EXPECT_THAT(text, HasSubstr("sluice_agent_some_new_counter 17\n"));
  // Mapped fields are not exported a second time under their raw path.
  EXPECT_THAT(text, Not(HasSubstr("sluice_agent_flows_active")));
  EXPECT_THAT(text, Not(HasSubstr("sluice_agent_rules_installed")));
}

TEST(MetricsTest, MuxBgpSessionOffloadLevelsAndBackends) {
  std::string text = Text(kMuxStats);
  EXPECT_THAT(text, HasSubstr("sluice_mux_drops_total{reason=\"no_backend\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_bgp_session{state=\"established\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_bgp_announced_vips 2\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_offloaded_flows_total{level=\"software\"} 10\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_offloaded_flows_total{level=\"nic\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_flows 12\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_worker_rx_packets_total{worker=\"1\"} 400\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_backend_flows_total{vip=\"10.200.0.10:80\","
                              "dip=\"10.1.0.1\",host=\"10.101.0.31\"} 6\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_draining 0\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_nic_offloaded_packets_total 70\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_nic_offloaded_bytes_total 7000\n"));
  EXPECT_THAT(text, HasSubstr("sluice_mux_nic_closes_to_software_total 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("last_error")));  // strings are not metrics
}

TEST(MetricsTest, AgentAndMuxHealth) {
  const std::string agent = Text(kAgentStats);
  EXPECT_THAT(agent, HasSubstr("sluice_agent_dip_healthy{dip=\"10.1.0.1\"} 0\n"));
  EXPECT_THAT(agent, HasSubstr("sluice_agent_dip_healthy{dip=\"10.1.0.3\"} 1\n"));
  EXPECT_THAT(agent, Not(HasSubstr("dip=\"10.1.0.2\"")));  // still deciding
  EXPECT_THAT(agent, HasSubstr("sluice_agent_health_probes_total{dip=\"10.1.0.1\","
                               "check=\"http 10.1.0.1:8080/health\"} 42\n"));
  EXPECT_THAT(agent, HasSubstr("sluice_agent_health_check_up{dip=\"10.1.0.1\","
                               "check=\"http 10.1.0.1:8080/health\"} 0\n"));
  EXPECT_THAT(agent, HasSubstr("sluice_agent_health_report_in_sync{mux=\"mux1\"} 1\n"));
  EXPECT_THAT(agent, HasSubstr("sluice_agent_health_report_pushes_total{mux=\"mux1\","
                               "result=\"failed\"} 2\n"));
  const std::string mux = Text(kMuxStats);
  EXPECT_THAT(mux, HasSubstr("sluice_mux_backends{state=\"healthy\"} 1\n"));
  EXPECT_THAT(mux, HasSubstr("sluice_mux_backends{state=\"unhealthy\"} 1\n"));
  EXPECT_THAT(mux, HasSubstr("sluice_mux_backend_healthy{vip=\"10.200.0.10:80\",dip=\"10.1.0.4\","
                             "host=\"10.101.0.34\"} 0\n"));
  EXPECT_THAT(mux, HasSubstr("sluice_mux_backend_health_unhealthy_dips 1\n"));
}

TEST(MetricsTest, SnatdChunksPoolsAndMuxSync) {
  const std::string text = Text(R"json({
    "role": "snatd", "name": "lab-snatd", "ready": true, "table_generation": 9,
    "chunks_leased": 3, "chunks_requested": 5, "chunks_granted": 4, "chunks_refused": 1,
    "chunks_exhausted": 1, "chunks_returned": 1, "mux_sync_errors": 2, "last_error": "x",
    "pools": [{"pool": "10.200.0.10/tcp 21000-22023", "chunk_ports": 32, "chunks": 32,
               "chunks_leased": 3}],
    "muxes": [{"address": "unix:/run/m1.sock", "in_sync": true, "synced_generation": 9,
               "last_error": ""},
              {"address": "10.0.0.2:50051", "in_sync": false, "synced_generation": 7,
               "last_error": "UNAVAILABLE"}],
    "chunks": ["10.200.0.10/tcp 21000-21031 -> host2"]})json");
  EXPECT_THAT(text, HasSubstr("sluice_snatd_info{name=\"lab-snatd\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE sluice_snatd_chunks_granted_total counter\n"));
  EXPECT_THAT(text, HasSubstr("sluice_snatd_chunks_granted_total 4\n"));
  EXPECT_THAT(text, HasSubstr("sluice_snatd_chunks_leased 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_snatd_mux_sync_errors_total 2\n"));
  EXPECT_THAT(text,
              HasSubstr("sluice_snatd_pool_chunks_leased{pool=\"10.200.0.10/tcp 21000-22023\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("sluice_snatd_mux_in_sync{mux=\"unix:/run/m1.sock\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("sluice_snatd_mux_in_sync{mux=\"10.0.0.2:50051\"} 0\n"));
  EXPECT_THAT(text, Not(HasSubstr("synced_generation")));
  EXPECT_THAT(text, Not(HasSubstr("chunk_ports")));
}

TEST(MetricsTest, RefusesDocumentsItCannotRead) {
  EXPECT_FALSE(FamiliesFromStats("not json").ok());
  EXPECT_FALSE(FamiliesFromStats("[1, 2]").ok());
  EXPECT_FALSE(FamiliesFromStats(R"({"rx_packets": 1})").ok());
  EXPECT_FALSE(FamiliesFromStats(R"({"role": "router"})").ok());
  // A malformed SNAT fraction is skipped, not misread.
  auto families = FamiliesFromStats(
      R"({"role": "agent", "vms": [{"name": "vm1", "snat_tcp_ports": "9/3"}]})");
  ASSERT_TRUE(families.ok());
  EXPECT_THAT(TextFormat(*families), Not(HasSubstr("snat_ports_free")));
}

// Fetches http://127.0.0.1:port/path; returns the whole response (headers and body).
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect to port " << port << " failed";
    close(fd);
    return "";
  }
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  return response;
}

TEST(MetricsServerTest, ServesTheDaemonsCountersOverHttp) {
  std::atomic<int> drops{7};
  auto server = MetricsServer::Start("127.0.0.1:0", [&] {
    std::string stats = kAgentStats;
    std::string from = "\"no_rule\": 7";
    stats.replace(stats.find(from), from.size(), "\"no_rule\": " + std::to_string(drops.load()));
    return stats;
  });
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  std::string first = HttpGet((*server)->port(), "/metrics");
  EXPECT_THAT(first, HasSubstr("200 OK"));
  EXPECT_THAT(first, HasSubstr("sluice_agent_drops_total{reason=\"no_rule\"} 7\n"));
  EXPECT_THAT(first, HasSubstr("sluice_metrics_stats_errors_total 0\n"));
  // Each scrape reads the counters afresh.
  drops = 12;
  std::string second = HttpGet((*server)->port(), "/metrics");
  EXPECT_THAT(second, HasSubstr("sluice_agent_drops_total{reason=\"no_rule\"} 12\n"));
}

TEST(MetricsServerTest, CountsStatsItCannotConvert) {
  auto server = MetricsServer::Start("127.0.0.1:0", [] { return std::string("{oops"); });
  ASSERT_TRUE(server.ok()) << server.status();
  std::string response = HttpGet((*server)->port(), "/metrics");
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("sluice_metrics_stats_errors_total 1\n"));
  EXPECT_THAT(response, Not(HasSubstr("sluice_agent_")));
}

TEST(MetricsServerTest, ClearErrorsForBadAddresses) {
  auto no_port = MetricsServer::Start("127.0.0.1", [] { return std::string("{}"); });
  ASSERT_FALSE(no_port.ok());
  EXPECT_THAT(std::string(no_port.status().message()), HasSubstr("ADDR:PORT"));

  auto first = MetricsServer::Start("127.0.0.1:0", [] { return std::string("{}"); });
  ASSERT_TRUE(first.ok());
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsServer::Start(taken, [] { return std::string("{}"); });
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(taken));

  auto off = ServeDaemonMetrics("", [] { return std::string("{}"); });
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(*off, nullptr);
}

}  // namespace
}  // namespace sluice::metrics
