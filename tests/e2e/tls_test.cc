// HTTPS in the server (--tls-cert-file, --tls-key-file) with a throwaway CA made by the test: the
// API over TLS, verified by the client and the CLI against the CA file, refused without it; plain
// HTTP to a TLS port gets nothing; bad certificate flags stop the start with the file's name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "e2e/corpus.h"
#include "http/exposure.h"
#include "lossguard/client/http_client.h"
#include "support/processes.h"
#include "support/temp_dir.h"
#include "support/test_ca.h"

namespace lossguard::testing {
namespace tls_test {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class TlsServerTest : public ::testing::Test {
 protected:
  TlsServerTest()
      : ca_(dir_.path() / "pki"),
        issued_(ca_.Issue("lossguard", {"DNS:localhost", "IP:127.0.0.1", "IP:::1"})),
        server_({.db = dir_.File("db"),
                 .extra_args = {"--tls-cert-file", issued_.certificate.string(), "--tls-key-file",
                                issued_.key.string()}}) {}

  client::HttpClient Verified() {
    client::HttpClientOptions options;
    options.ca_file = ca_.certificate().string();
    return client::HttpClient(server_.url(), options);
  }

  TempDir dir_;
  TestCa ca_;
  TestCa::Issued issued_;
  ServerProcess server_;
};

TEST_F(TlsServerTest, TheApiAnswersOverTlsToAClientThatVerifiesIt) {
  ASSERT_THAT(server_.url(), StartsWith("https://127.0.0.1:"));
  client::HttpClient api = Verified();
  EXPECT_EQ(api.Get("/healthz").status, 200u);
  auto lines = Lines("bug-sum-no-ga-div");
  Send(api, lines, 0, lines.size());
  EXPECT_EQ(Alerts(api, "bug-sum-no-ga-div").size(), 1u);

  client::HttpClient unverified(server_.url(), {});
  try {
    unverified.Get("/healthz");
    FAIL() << "a certificate of an unknown CA was accepted";
  } catch (const client::HttpError& e) {
    EXPECT_THAT(e.what(), HasSubstr("certificate verify failed"));
  }
  // Plain HTTP to the TLS port: no answer in clear text, the connection is closed.
  client::HttpClient plain("http://" + server_.url().substr(std::string("https://").size()), {});
  EXPECT_THROW(plain.Get("/healthz"), client::HttpError);
  EXPECT_EQ(api.Get("/healthz").status, 200u) << "the server is unharmed";
}

TEST_F(TlsServerTest, TheCliVerifiesTheServerWithTheCaFile) {
  const std::string file = (kCorpus / "bug-lr-spike.ndjson").string();
  CommandResult refused = RunCommand(
      {LOSSGUARD_CLI_BINARY, "replay", file, "--server", server_.url()}, std::chrono::minutes(1));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("certificate verify failed"));
  CommandResult replay = RunCommand({LOSSGUARD_CLI_BINARY, "replay", file, "--server",
                                     server_.url(), "--ca-file", ca_.certificate().string()},
                                    std::chrono::minutes(1));
  EXPECT_EQ(replay.exit_code, 0) << replay.err;
  CommandResult alerts =
      RunCommand({LOSSGUARD_CLI_BINARY, "alerts", "--server", server_.url()},
                 std::chrono::minutes(1), {{"LOSSGUARD_CA_FILE", ca_.certificate().string()}});
  EXPECT_EQ(alerts.exit_code, 0) << alerts.err;
  EXPECT_THAT(alerts.out, HasSubstr("grad_explosion"));
}

TEST(TlsServer, BadCertificateFlagsStopTheStartNamingTheFile) {
  TempDir dir;
  TestCa ca(dir.path() / "pki");
  TestCa::Issued one = ca.Issue("one", {"IP:127.0.0.1"});
  TestCa::Issued other = ca.Issue("other", {"IP:127.0.0.1"});
  auto start = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {LOSSGUARD_SERVER_BINARY, "--listen", "127.0.0.1:0", "--db",
                               dir.File("db").string()});
    return RunCommand(args, std::chrono::seconds(30));
  };
  auto alone = start({"--tls-cert-file", one.certificate.string()});
  EXPECT_EQ(alone.exit_code, 2);
  EXPECT_THAT(alone.err, HasSubstr("go together"));
  auto mismatched =
      start({"--tls-cert-file", one.certificate.string(), "--tls-key-file", other.key.string()});
  EXPECT_EQ(mismatched.exit_code, 1);
  EXPECT_THAT(mismatched.err, HasSubstr("is not the key of the certificate"));
  auto not_pem = start({"--tls-cert-file", (kCorpus / "manifest.json").string(), "--tls-key-file",
                        one.key.string()});
  EXPECT_EQ(not_pem.exit_code, 1);
  EXPECT_THAT(not_pem.err, HasSubstr("manifest.json: cannot load the certificate chain"));
}

TEST(PlaintextExposure, WarnsOffLoopbackWithoutTlsAndNamesTheRisk) {
  EXPECT_FALSE(http::PlaintextWarning({"127.0.0.1", 8080}, /*tls=*/false).has_value());
  EXPECT_FALSE(http::PlaintextWarning({"::1", 8080}, /*tls=*/false).has_value());
  EXPECT_FALSE(http::PlaintextWarning({"0.0.0.0", 8080}, /*tls=*/true).has_value());
  const std::optional<std::string> warning = http::PlaintextWarning({"0.0.0.0", 8080}, false);
  ASSERT_TRUE(warning.has_value());
  EXPECT_THAT(*warning, HasSubstr("clear text"));
  EXPECT_THAT(*warning, HasSubstr("tokens"));
  EXPECT_THAT(*warning, HasSubstr("--tls-cert-file"));
}

}  // namespace tls_test
}  // namespace lossguard::testing
