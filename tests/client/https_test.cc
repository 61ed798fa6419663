// The client over https:// against a real TLS server on loopback (the webhook sink) with
// certificates from a throwaway CA made here: verified by default, against the given CA file, and
// for the URL's host.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "lossguard/client/http_client.h"
#include "lossguard/collector/record_stream.h"
#include "support/processes.h"
#include "support/records.h"
#include "support/temp_dir.h"
#include "support/test_ca.h"
#include "support/webhook_sink.h"

namespace lossguard::client {
namespace https_test {

using lossguard::testing::TempDir;
using lossguard::testing::TestCa;
using lossguard::testing::WebhookSink;
using ::testing::HasSubstr;

class HttpsTest : public ::testing::Test {
 protected:
  HttpsTest()
      : ca_(dir_.path() / "pki"),
        issued_(ca_.Issue("sink", {"DNS:localhost", "IP:127.0.0.1"})),
        sink_(WebhookSink::Tls{issued_.certificate, issued_.key}) {}

  HttpClientOptions Trusting(const std::filesystem::path& ca) {
    HttpClientOptions options;
    options.ca_file = ca.string();
    options.timeout = std::chrono::seconds(10);
    return options;
  }

  TempDir dir_;
  TestCa ca_;
  TestCa::Issued issued_;
  WebhookSink sink_;
};

TEST_F(HttpsTest, PostsOverTlsToAServerItsCaVouchesFor) {
  HttpClient client(sink_.Url("/hook?channel=ml"), Trusting(ca_.certificate()));
  HttpResponse response =
      client.Request("POST", "", R"({"hello":1})", "application/json", {{"Idempotency-Key", "k1"}});
  EXPECT_EQ(response.status, 200u);
  // Kept alive: a second request on the same connection.
  EXPECT_EQ(client.Post("", "{}", "application/json").status, 200u);
  auto requests = sink_.Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].target, "/hook?channel=ml");
  EXPECT_EQ(requests[0].body, R"({"hello":1})");
  EXPECT_EQ(requests[0].idempotency_key, "k1");

  HttpClient by_name("https://localhost:" + std::to_string(sink_.port()) + "/hook",
                     Trusting(ca_.certificate()));
  EXPECT_EQ(by_name.Get("").status, 200u) << "the certificate names localhost too";
}

TEST_F(HttpsTest, RefusesAServerTheCaDoesNotVouchFor) {
  TestCa stranger(dir_.path() / "other", "other-ca");
  HttpClient client(sink_.Url(), Trusting(stranger.certificate()));
  try {
    client.Get("");
    FAIL() << "a certificate from another CA was accepted";
  } catch (const HttpError& e) {
    EXPECT_THAT(e.what(), HasSubstr("certificate verify failed"));
  }
  // Nor by default: the system's authorities do not know the test CA.
  HttpClient by_default(sink_.Url(), {});
  EXPECT_THROW(by_default.Get(""), HttpError);
  EXPECT_TRUE(sink_.Requests().empty()) << "nothing was sent before the server was verified";
}

TEST_F(HttpsTest, RefusesACertificateForAnotherHost) {
  TestCa::Issued elsewhere = ca_.Issue("elsewhere", {"DNS:elsewhere.test"});
  WebhookSink impostor(WebhookSink::Tls{elsewhere.certificate, elsewhere.key});
  HttpClient client(impostor.Url(), Trusting(ca_.certificate()));
  try {
    client.Get("");
    FAIL() << "a certificate for elsewhere.test was accepted for 127.0.0.1";
  } catch (const HttpError& e) {
    EXPECT_THAT(e.what(), HasSubstr("certificate verify failed"));
  }
  EXPECT_TRUE(impostor.Requests().empty());
}

TEST_F(HttpsTest, AMissingCaFileIsAnErrorNamingIt) {
  try {
    HttpClient client(sink_.Url(), Trusting(dir_.path() / "no-such-ca.pem"));
    FAIL() << "a CA file that does not exist was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("no-such-ca.pem"));
  }
}

TEST_F(HttpsTest, ATrainersRecordStreamDeliversToAnHttpsServer) {
  TestCa::Issued server_cert = ca_.Issue("server", {"IP:127.0.0.1"});
  lossguard::testing::ServerProcess server(
      {.db = dir_.File("db"),
       .extra_args = {"--tls-cert-file", server_cert.certificate.string(), "--tls-key-file",
                      server_cert.key.string()}});
  ASSERT_EQ(server.url().rfind("https://", 0), 0u);
  {
    collector::RecordStream stream(collector::RecordStreamOptions()
                                       .server_url(server.url())
                                       .ca_file(ca_.certificate().string())
                                       .spool_path(dir_.File("spool.ndjson").string()));
    for (int step = 0; step < 50; ++step) {
      ASSERT_TRUE(stream.Submit(lossguard::testing::MakeRecord("tls-run", step)));
    }
    ASSERT_TRUE(stream.Flush(std::chrono::seconds(20)));
    EXPECT_EQ(stream.stats().delivered, 50u);
  }
  HttpClient reader(server.url(), Trusting(ca_.certificate()));
  EXPECT_THAT(reader.Get("/api/v1/runs/tls-run").body, HasSubstr("\"records\":50"));

  // Without the CA the stream cannot deliver: the records wait in its spool, nothing is lost.
  collector::RecordStream untrusting(collector::RecordStreamOptions()
                                         .server_url(server.url())
                                         .spool_path(dir_.File("spool-2.ndjson").string())
                                         .drain_timeout(std::chrono::milliseconds(200)));
  ASSERT_TRUE(untrusting.Submit(lossguard::testing::MakeRecord("tls-run", 50)));
  EXPECT_FALSE(untrusting.Flush(std::chrono::seconds(2)));
  EXPECT_EQ(untrusting.stats().delivered, 0u);
}

TEST(PlainHttp, StillWorksAndAnswersCarryTheirStatus) {
  WebhookSink sink;
  sink.Answer(503);
  HttpClient client(sink.Url(), {});
  EXPECT_EQ(client.Post("", "{}", "application/json").status, 503u);
  sink.GoDown();
  EXPECT_THROW(client.Post("", "{}", "application/json"), HttpError) << "connection refused";
  sink.ComeBack();
  sink.Answer(200);
  EXPECT_EQ(client.Post("", "{}", "application/json").status, 200u) << "reconnects";
  EXPECT_EQ(sink.Requests().size(), 2u);
}

}  // namespace https_test
}  // namespace lossguard::client
