// gRPC servers as the daemons start them: mutual TLS on TCP (a throwaway PKI made by
// tests/support/make_test_pki.sh at test time, loopback only), the checks of the TLS files
// done before a daemon starts, and the unix socket's mode and group.
#include "common/grpc_util.h"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "sluice/v1/agent.grpc.pb.h"

namespace sluice {
namespace {

// Answers Health with a fixed name: enough to see whether a call got through.
class HealthOnlyAgent final : public v1::Agent::Service {
 public:
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse* response) override {
    response->set_name("tls-test-agent");
    return grpc::Status::OK;
  }
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class GrpcTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char dir[] = "/tmp/sluice-grpc-tls-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    pki_ = dir;
    const std::string command = std::string(SLUICE_TEST_PKI_SCRIPT) + " " + pki_ + " >" +
                                pki_ + "/make.log 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << ReadFile(pki_ + "/make.log");
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(pki_); }

  static std::string Pki(const std::string& file) { return pki_ + "/" + file; }

  // A server on 127.0.0.1 with TLS from `files`; returns its "127.0.0.1:port".
  std::string StartTcp(const TlsFiles& files) {
    absl::StatusOr<TlsPem> pem = LoadTlsPem(files, "--grpc-tls-");
    EXPECT_TRUE(pem.ok()) << pem.status();
    if (!pem.ok()) return "";
    int port = 0;
    absl::StatusOr<std::unique_ptr<grpc::Server>> server = StartGrpcServer(
        {.tcp_listen = "127.0.0.1:0", .tcp_tls = *pem}, {&service_}, &port);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return "";
    server_ = std::move(*server);
    EXPECT_GT(port, 0);
    return "127.0.0.1:" + std::to_string(port);
  }

  // One Health call to `target` as a client with `tls` (none: plaintext).
  static grpc::Status Call(const std::string& target, const std::optional<TlsFiles>& tls) {
    DialOptions dial;
    if (tls) {
      absl::StatusOr<TlsPem> pem = LoadTlsPem(*tls, "--tls-");
      EXPECT_TRUE(pem.ok()) << pem.status();
      dial.tls = *pem;
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::HealthResponse response;
    grpc::Status s =
        v1::Agent::NewStub(DialSluice(target, dial))->Health(&context, {}, &response);
    if (s.ok()) {
      EXPECT_EQ(response.name(), "tls-test-agent");
    }
    return s;
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  static std::string pki_;
  HealthOnlyAgent service_;
  std::unique_ptr<grpc::Server> server_;
};

std::string GrpcTlsTest::pki_;

TEST_F(GrpcTlsTest, MutualTlsAdmitsOnlyClientsWithACertificateFromTheCa) {
  const std::string target = StartTcp(
      {.cert = Pki("server.pem"), .key = Pki("server.key"), .ca = Pki("ca.pem")});
  ASSERT_FALSE(target.empty());

  grpc::Status good =
      Call(target, TlsFiles{.cert = Pki("client.pem"), .key = Pki("client.key"), .ca = Pki("ca.pem")});
  EXPECT_TRUE(good.ok()) << good.error_message();

  grpc::Status no_cert = Call(target, TlsFiles{.ca = Pki("ca.pem")});
  EXPECT_EQ(no_cert.error_code(), grpc::StatusCode::UNAVAILABLE) << no_cert.error_message();

  grpc::Status wrong_ca =
      Call(target, TlsFiles{.cert = Pki("rogue.pem"), .key = Pki("rogue.key"), .ca = Pki("ca.pem")});
  EXPECT_EQ(wrong_ca.error_code(), grpc::StatusCode::UNAVAILABLE) << wrong_ca.error_message();

  grpc::Status plaintext = Call(target, std::nullopt);
  EXPECT_EQ(plaintext.error_code(), grpc::StatusCode::UNAVAILABLE) << plaintext.error_message();

  // The client checks the server too: a server certificate from another CA is refused.
  grpc::Status untrusted_server = Call(
      target,
      TlsFiles{.cert = Pki("client.pem"), .key = Pki("client.key"), .ca = Pki("other-ca.pem")});
  EXPECT_EQ(untrusted_server.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsTest, TlsWithoutCaEncryptsButAsksNoClientCertificate) {
  const std::string target = StartTcp({.cert = Pki("server.pem"), .key = Pki("server.key")});
  ASSERT_FALSE(target.empty());
  grpc::Status no_cert = Call(target, TlsFiles{.ca = Pki("ca.pem")});
  EXPECT_TRUE(no_cert.ok()) << no_cert.error_message();
  grpc::Status plaintext = Call(target, std::nullopt);
  EXPECT_EQ(plaintext.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcTlsTest, LoadTlsPemRefusesMissingBrokenAndMismatchedFiles) {
  auto error = [](const TlsFiles& files) {
    absl::StatusOr<TlsPem> pem = LoadTlsPem(files, "--grpc-tls-");
    EXPECT_FALSE(pem.ok());
    return pem.ok() ? std::string("(accepted)") : std::string(pem.status().message());
  };
  EXPECT_EQ(error({.cert = Pki("nope.pem"), .key = Pki("server.key")}),
            "--grpc-tls-cert " + Pki("nope.pem") + ": cannot read: No such file or directory");
  EXPECT_EQ(error({.cert = Pki("server.pem"), .key = Pki("client.key")}),
            "--grpc-tls-key " + Pki("client.key") + ": is not the key of the certificate in " +
                Pki("server.pem"));
  EXPECT_EQ(error({.cert = Pki("server.pem"), .key = Pki("stray.key")}),
            "--grpc-tls-key " + Pki("stray.key") + ": is not the key of the certificate in " +
                Pki("server.pem"));
  EXPECT_EQ(error({.cert = Pki("server.pem")}),
            "--grpc-tls-cert needs --grpc-tls-key too (a certificate and its key)");
  EXPECT_EQ(error({.key = Pki("server.key")}),
            "--grpc-tls-key needs --grpc-tls-cert too (a certificate and its key)");
  EXPECT_EQ(error({.cert = Pki("server.key"), .key = Pki("server.key")}).rfind(
                "--grpc-tls-cert " + Pki("server.key") + ": not a PEM certificate", 0),
            0u);
  EXPECT_EQ(error({.cert = Pki("server.pem"), .key = Pki("server.pem")}).rfind(
                "--grpc-tls-key " + Pki("server.pem") + ": not an unencrypted PEM private key", 0),
            0u);
  EXPECT_EQ(error({.cert = Pki("server.pem"), .key = Pki("server.key"), .ca = Pki("ca.key")})
                .rfind("--grpc-tls-ca " + Pki("ca.key") + ": not a PEM certificate", 0),
            0u);
  if (geteuid() != 0) {  // root reads anything
    const std::string unreadable = Pki("unreadable.key");
    std::filesystem::copy_file(Pki("server.key"), unreadable);
    chmod(unreadable.c_str(), 0);
    EXPECT_EQ(error({.cert = Pki("server.pem"), .key = unreadable}),
              "--grpc-tls-key " + unreadable + ": cannot read: Permission denied");
  }
  absl::StatusOr<TlsPem> good =
      LoadTlsPem({.cert = Pki("server.pem"), .key = Pki("server.key"), .ca = Pki("ca.pem")}, "--x-");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->ca, ReadFile(Pki("ca.pem")));
}

TEST_F(GrpcTlsTest, DaemonFlagsAreCheckedBeforeTheDaemonStarts) {
  DaemonOptions options{.grpc_socket = "/tmp/x.sock"};
  options.grpc_tls_cert = Pki("server.pem");
  options.grpc_tls_key = Pki("server.key");
  absl::StatusOr<GrpcServerOptions> no_listen = DaemonGrpcOptions(options);
  ASSERT_FALSE(no_listen.ok());
  EXPECT_EQ(no_listen.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_listen.status().message().find("--grpc-listen, which is not set"),
            std::string_view::npos);

  options.grpc_listen = "127.0.0.1:0";
  options.grpc_tls_key = Pki("client.key");
  absl::StatusOr<GrpcServerOptions> mismatch = DaemonGrpcOptions(options);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("is not the key of the certificate"),
            std::string_view::npos);

  options.grpc_tls_cert.clear();
  options.grpc_tls_key.clear();
  options.grpc_tls_ca = Pki("ca.pem");
  absl::StatusOr<GrpcServerOptions> ca_only = DaemonGrpcOptions(options);
  ASSERT_FALSE(ca_only.ok());
  EXPECT_EQ(ca_only.status().message(),
            "--grpc-tls-ca needs --grpc-tls-cert and --grpc-tls-key (the server's own "
            "certificate)");

  options.grpc_tls_cert = Pki("server.pem");
  options.grpc_tls_key = Pki("server.key");
  absl::StatusOr<GrpcServerOptions> good = DaemonGrpcOptions(options);
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_TRUE(good->tcp_tls.has_value());
  EXPECT_FALSE(good->tcp_tls->ca.empty());
  EXPECT_EQ(DescribeGrpcServer(*good),
            "gRPC on unix:/tmp/x.sock (mode 0660) and 127.0.0.1:0 (mutual TLS: clients need a "
            "certificate from the CA)");

  options.grpc_socket_group = "no-such-group-sluice";
  absl::StatusOr<GrpcServerOptions> bad_group = DaemonGrpcOptions(options);
  ASSERT_FALSE(bad_group.ok());
  EXPECT_EQ(bad_group.status().message(), "--grpc-socket-group no-such-group-sluice: no such group");
}

// The unix socket is mode 0660 with the group asked for: only its owner (the daemon's user)
// and that group's members may connect.
// The daemons' client side (health_report.tls, snat_allocator.tls, snatd's mux_tls): the YAML
// map read, its files checked at config time, and the options it yields dial a server that
// requires mutual TLS.
TEST_F(GrpcTlsTest, ClientTlsFromYamlDialsAMutualTlsServer) {
  const std::string target = StartTcp(
      {.cert = Pki("server.pem"), .key = Pki("server.key"), .ca = Pki("ca.pem")});
  ASSERT_FALSE(target.empty());
  auto read = [](const std::string& yaml, DialOptions* out) {
    absl::StatusOr<ConfigNode> root = ConfigNode::LoadString(yaml, "test.yaml");
    EXPECT_TRUE(root.ok()) << root.status();
    if (!root.ok()) return root.status();
    ConfigNode report = root->Map("health_report");
    *out = ReadClientTls(report, "tls");
    return root->status();
  };
  DialOptions dial;
  absl::Status ok = read("health_report:\n  tls: { ca: " + Pki("ca.pem") + ", cert: " +
                             Pki("client.pem") + ", key: " + Pki("client.key") +
                             ", server_name: localhost }\n",
                         &dial);
  ASSERT_TRUE(ok.ok()) << ok;
  ASSERT_TRUE(dial.tls.has_value());
  EXPECT_EQ(dial.server_name, "localhost");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::HealthResponse response;
  grpc::Status s = v1::Agent::NewStub(DialSluice(target, dial))->Health(&context, {}, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();

  // Without the map: plaintext, which the mutual-TLS server refuses.
  DialOptions plain;
  ASSERT_TRUE(read("health_report: { timeout_ms: 10 }\n", &plain).ok());
  EXPECT_FALSE(plain.tls.has_value());
  grpc::ClientContext context2;
  context2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  EXPECT_EQ(v1::Agent::NewStub(DialSluice(target, plain))->Health(&context2, {}, &response)
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // Bad maps: the error names the field and the file.
  struct Case {
    std::string yaml;
    std::string error;
  };
  const Case cases[] = {
      {"health_report:\n  tls: { ca: /nonexistent/ca.pem }\n",
       "test.yaml:2:8: health_report.tls: ca /nonexistent/ca.pem: cannot read"},
      {"health_report:\n  tls: { cert: " + Pki("client.pem") + " }\n",
       "health_report.tls: cert needs key too"},
      {"health_report:\n  tls: { cert: " + Pki("client.pem") + ", key: " + Pki("stray.key") +
           " }\n",
       "is not the key of the certificate in " + Pki("client.pem")},
      {"health_report:\n  tls: {}\n", "health_report.tls: names no file"},
      {"health_report:\n  tls: { ca: " + Pki("ca.pem") + ", pin: x }\n", "pin"},
  };
  for (const Case& c : cases) {
    DialOptions out;
    absl::Status status = read(c.yaml, &out);
    EXPECT_FALSE(status.ok()) << c.yaml;
    EXPECT_NE(std::string(status.message()).find(c.error), std::string::npos)
        << c.yaml << " -> " << status.message();
  }
}

TEST(GrpcUnixSocketTest, ModeAndGroupLimitWhoMayCall) {
  char dir[] = "/tmp/sluice-grpc-sock-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string socket = std::string(dir) + "/api.sock";
  // A group this process may give a file: any group as root, else one of its own.
  gid_t gid = getegid();
  if (geteuid() == 0) {
    if (const struct group* g = getgrnam("nogroup")) gid = g->gr_gid;
  } else {
    gid_t groups[64];
    int n = getgroups(64, groups);
    for (int i = 0; i < n; ++i) {
      if (groups[i] != gid) {
        gid = groups[i];
        break;
      }
    }
  }
  const struct group* g = getgrgid(gid);
  ASSERT_NE(g, nullptr);
  HealthOnlyAgent service;
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartGrpcServer({.unix_socket = socket, .socket_group = g->gr_name}, {&service});
  ASSERT_TRUE(server.ok()) << server.status();
  struct stat st;
  ASSERT_EQ(stat(socket.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(st.st_gid, gid);
  grpc::ClientContext context;
  v1::HealthResponse health;
  EXPECT_TRUE(v1::Agent::NewStub(DialSluice(socket))->Health(&context, {}, &health).ok());
  (*server)->Shutdown();
  unlink(socket.c_str());

  // A file in the way that is not a socket is left alone and refused.
  { std::ofstream(socket) << "not a socket"; }
  absl::StatusOr<std::unique_ptr<grpc::Server>> refused =
      StartGrpcServer({.unix_socket = socket}, {&service});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(),
            "gRPC socket " + socket + " exists and is not a socket");
  unlink(socket.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace sluice
