#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "http/exposure.h"
#include "http/header_block.h"
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

TEST(BudgetConnections, KeepsTheStoresDescriptorsAndLowersTheCapWithAWarning) {
  const std::size_t reserved = http::ReservedDescriptors(7);
  EXPECT_EQ(reserved, 32u + 3u * 7u);
  auto roomy = http::BudgetConnections(100, {.soft = 100'000, .hard = 100'000}, reserved);
  EXPECT_EQ(roomy.sessions, 100u);
  EXPECT_FALSE(roomy.warning.has_value());

  auto tight = http::BudgetConnections(1000, {.soft = 256, .hard = 256}, reserved);
  EXPECT_EQ(tight.sessions + tight.refusals + reserved, 256u) << "every descriptor accounted for";
  EXPECT_GT(tight.sessions, 0u);
  EXPECT_GT(tight.refusals, 0u);
  ASSERT_TRUE(tight.warning.has_value());
  EXPECT_THAT(*tight.warning,
              HasSubstr("--max-connections 1000 lowered to " + std::to_string(tight.sessions)));

  auto too_low = http::BudgetConnections(10, {.soft = reserved + 1, .hard = 1024}, reserved);
  EXPECT_EQ(too_low.sessions, 0u);
  ASSERT_TRUE(too_low.warning.has_value());
  EXPECT_THAT(*too_low.warning, HasSubstr("too low to serve"));
}

TEST(ScanHeaderBlock, FindsTheEndOrAFoldFromLineEndsAlone) {
  using http::HeaderBlock;
  using http::ScanHeaderBlock;
  const std::string request = "GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
  EXPECT_EQ(ScanHeaderBlock(request), HeaderBlock::kComplete);
  // Every prefix before the final CRLF is incomplete, whichever byte a segment ends on.
  for (std::size_t cut = 0; cut + 2 < request.size(); ++cut) {
    EXPECT_EQ(ScanHeaderBlock(std::string_view(request).substr(0, cut)), HeaderBlock::kIncomplete)
        << cut;
  }
  EXPECT_EQ(ScanHeaderBlock("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n"),
            HeaderBlock::kFolded);
  EXPECT_EQ(ScanHeaderBlock("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\t2\r\n\r\n"),
            HeaderBlock::kFolded);
  EXPECT_EQ(ScanHeaderBlock("GET / HTTP/1.1\r\n Host: x\r\n\r\n"), HeaderBlock::kFolded)
      << "white space before the first field";
  EXPECT_EQ(ScanHeaderBlock("GET / HTTP/1.1\nHost: x\n\n"), HeaderBlock::kComplete)
      << "a bare LF is the parser's to refuse";
  // A body that looks folded is not looked at.
  EXPECT_EQ(ScanHeaderBlock("POST / HTTP/1.1\r\nHost: x\r\n\r\na\r\n b"), HeaderBlock::kComplete);
}

}  // namespace token_and_exposure_test
}  // namespace lossguard
