#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "http/exposure.h"
#include "support/records.h"
#include "support/temp_dir.h"
#include "token.h"

namespace lossguard {
namespace token_and_exposure_test {

using http::CheckExposure;
using http::IsLoopback;

using ::testing::HasSubstr;

TEST(LoadToken, FileWinsOverEnvironmentAndIsTrimmed) {
  testing::TempDir dir;
  std::ofstream(dir.File("token")) << "  s3cret\n";
  auto token = LoadToken(dir.File("token").string(), "from-env");
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token.value(), "s3cret");
}

TEST(LoadToken, EnvironmentOrNothing) {
  EXPECT_EQ(LoadToken(std::nullopt, "abc").value(), "abc");
  EXPECT_EQ(LoadToken(std::nullopt, nullptr).value(), std::nullopt);
  EXPECT_THAT(LoadToken(std::nullopt, "  ").error(), HasSubstr("LOSSGUARD_TOKEN is set but empty"));
}

TEST(LoadToken, UnreadableOrEmptyFileIsAnError) {
  testing::TempDir dir;
  EXPECT_THAT(LoadToken(dir.File("missing").string(), nullptr).error(), HasSubstr("No such file"));
  std::ofstream(dir.File("empty")) << "\n";
  EXPECT_THAT(LoadToken(dir.File("empty").string(), nullptr).error(), HasSubstr("is empty"));
}

TEST(CheckExposure, LoopbackOnlyWithoutToken) {
  EXPECT_TRUE(CheckExposure({"127.0.0.1", 8080}, "").ok());
  EXPECT_TRUE(CheckExposure({"127.3.2.1", 8080}, "").ok());
  EXPECT_TRUE(CheckExposure({"::1", 8080}, "").ok());
  EXPECT_THAT(CheckExposure({"0.0.0.0", 8080}, "").error(), HasSubstr("refusing to listen"));
  EXPECT_THAT(CheckExposure({"::", 8080}, "").error(), HasSubstr("without a token"));
  EXPECT_TRUE(CheckExposure({"0.0.0.0", 8080}, "token").ok());
  EXPECT_THAT(CheckExposure({"localhost", 8080}, "").error(), HasSubstr("must be an IP address"));
}

TEST(IsLoopback, MappedIpv4LoopbackIsLoopback) {
  EXPECT_TRUE(IsLoopback("127.0.0.1"));
  EXPECT_TRUE(IsLoopback("127.9.9.9"));
  EXPECT_TRUE(IsLoopback("::1"));
  EXPECT_TRUE(IsLoopback("::ffff:127.0.0.1"));
  EXPECT_FALSE(IsLoopback("::ffff:10.0.0.1"));
  EXPECT_FALSE(IsLoopback("0.0.0.0"));
  EXPECT_FALSE(IsLoopback("::"));
  EXPECT_TRUE(CheckExposure({"::ffff:127.0.0.1", 8080}, "").ok());
}

TEST(WeakTokenWarning, ShortOrRepetitiveTokensAreNamed) {
  EXPECT_THAT(WeakTokenWarning("x").value_or(""), HasSubstr("1 characters"));
  EXPECT_TRUE(WeakTokenWarning("aaaaaaaaaaaaaaaaaaaaaaaa").has_value());
  EXPECT_FALSE(WeakTokenWarning("6f1c0e9a4b7d2e8f5a3c1b0d").has_value());
}

}  // namespace token_and_exposure_test
}  // namespace lossguard
