#include "lossguard/client/url.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lossguard::client {
namespace url_test {

using ::testing::HasSubstr;

TEST(ParseHostPort, Ipv4Ipv6AndNames) {
  auto v4 = ParseHostPort("127.0.0.1:8080");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4.value().host, "127.0.0.1");
  EXPECT_EQ(v4.value().port, 8080);
  auto v6 = ParseHostPort("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6.value().host, "::1");
  EXPECT_EQ(v6.value().port, 0);
  EXPECT_TRUE(ParseHostPort("localhost:80").ok());
}

TEST(ParseHostPort, Rejects) {
  EXPECT_THAT(ParseHostPort("127.0.0.1").error(), HasSubstr("HOST:PORT"));
  EXPECT_THAT(ParseHostPort("127.0.0.1:99999").error(), HasSubstr("0-65535"));
  EXPECT_THAT(ParseHostPort("127.0.0.1:http").error(), HasSubstr("\"http\""));
  EXPECT_THAT(ParseHostPort("::1:8080").error(), HasSubstr("brackets"));
  EXPECT_THAT(ParseHostPort(":8080").error(), HasSubstr("empty host"));
  EXPECT_THAT(ParseHostPort("[::1:8080").error(), HasSubstr("']'"));
}

TEST(ParseHttpUrl, PortDefaultAndPrefix) {
  auto url = ParseHttpUrl("http://example.test/lossguard/");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url.value().endpoint.port, 80);
  EXPECT_EQ(url.value().base_path, "/lossguard");
  auto v6 = ParseHttpUrl("http://[::1]:9000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6.value().endpoint.host, "::1");
  EXPECT_EQ(v6.value().endpoint.port, 9000);
  auto https = ParseHttpUrl("https://hooks.example.test/services/T1/B2?x=1");
  ASSERT_TRUE(https.ok());
  EXPECT_TRUE(https.value().tls);
  EXPECT_EQ(https.value().endpoint.port, 443);
  EXPECT_EQ(https.value().base_path, "/services/T1/B2?x=1");
  EXPECT_FALSE(url.value().tls);
  EXPECT_THAT(ParseHttpUrl("ftp://x:1").error(), HasSubstr("must start with http:// or https://"));
  EXPECT_THAT(ParseHttpUrl("https://user:pw@x:1").error(), HasSubstr("credentials"));
  EXPECT_THAT(ParseHttpUrl("http://x:port").error(), HasSubstr("bad URL"));
}

}  // namespace url_test
}  // namespace lossguard::client
