#include "hostagent/snat_allocator_grpc.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "common/grpc_util.h"
#include "hostagent/agent_control.h"

namespace sluice::agent {
namespace {

/// sluice-snatd's API in memory: records each RequestChunk and grants a fixed chunk.
class FakeSnatd final : public v1::SnatAllocator::Service {
 public:
  grpc::Status RequestChunk(grpc::ServerContext*, const v1::RequestChunkRequest* request,
                            v1::RequestChunkResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(*request);
    v1::SnatChunk* c = response->mutable_chunk();
    c->set_vip(request->vip());
    c->set_protocol(request->protocol());
    c->set_port_start(21000);
    c->set_port_count(32);
    c->set_host(request->host());
    c->set_host_pa(request->host_pa());
    c->set_dip(request->dip());
    c->set_encap(request->encap());
    return grpc::Status::OK;
  }
  grpc::Status ListLeases(grpc::ServerContext*, const v1::ListLeasesRequest*,
                          v1::ListLeasesResponse*) override {
    return grpc::Status::OK;  // nothing held yet
  }
  std::vector<v1::RequestChunkRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<v1::RequestChunkRequest> requests_;
};

class SnatAllocatorGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(mkdtemp(dir_), nullptr);
    socket_ = std::string(dir_) + "/snatd.sock";
    absl::StatusOr<std::unique_ptr<grpc::Server>> server =
        StartGrpcServer({.unix_socket = socket_}, {&snatd_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  void TearDown() override {
    server_->Shutdown();
    unlink(socket_.c_str());
    rmdir(dir_);
  }
  /// The encapsulation the agent of `datapath` asks sluice-snatd for.
  v1::Encap AskedEncap(Datapath datapath) {
    AgentConfig config;
    config.name = "host2";
    config.datapath = datapath;
    config.address.addr = 0x0a650016;  // 10.101.0.22
    config.snat_allocator = SnatAllocatorClientConfig{.address = "unix:" + socket_};
    std::unique_ptr<GrpcSnatAllocator> allocator = ConnectSnatAllocator(&config);
    EXPECT_NE(allocator, nullptr);
    if (allocator == nullptr) return v1::ENCAP_UNSPECIFIED;
    const size_t before = snatd_.requests().size();
    absl::StatusOr<SnatLeaseConfig> chunk = allocator->RequestChunk(0x0a010004, 0x0ac8000a, 6);
    EXPECT_TRUE(chunk.ok()) << chunk.status();
    const std::vector<v1::RequestChunkRequest> requests = snatd_.requests();
    EXPECT_EQ(requests.size(), before + 1);
    if (requests.size() != before + 1) return v1::ENCAP_UNSPECIFIED;
    EXPECT_EQ(requests.back().host(), "host2");
    EXPECT_EQ(requests.back().host_pa(), "10.101.0.22");
    return requests.back().encap();
  }

  char dir_[32] = "/tmp/sluice-snatd-grpc-XXXXXX";
  std::string socket_;
  FakeSnatd snatd_;
  std::unique_ptr<grpc::Server> server_;
};

// Open vSwitch's userspace datapath has no IPIP: a vswitch-mode agent asks for GRE, so the
// muxes send the replies to its chunks as GRE. The DPDK agent takes IPIP.
TEST_F(SnatAllocatorGrpcTest, TheAgentAsksForTheEncapsulationItsDatapathDecaps) {
  EXPECT_EQ(AskedEncap(Datapath::kVswitch), v1::ENCAP_GRE);
  EXPECT_EQ(AskedEncap(Datapath::kDpdk), v1::ENCAP_IPIP);
}

}  // namespace
}  // namespace sluice::agent
