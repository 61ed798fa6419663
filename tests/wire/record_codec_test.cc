#include "lossguard/wire/record_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

namespace lossguard::wire {
namespace record_codec_test {

using nlohmann::json;
using ::testing::HasSubstr;

json Minimal() {
  return {{"run", "r1"}, {"step", 3}, {"ga_steps", 8}, {"micro_batch_size", 1}, {"loss", 2.5}};
}

RecordError ErrorFor(const json& record) {
  auto parsed = ParseRecord(record, 7);
  EXPECT_FALSE(parsed.ok()) << record.dump();
  return parsed.ok() ? RecordError{} : parsed.error();
}

TEST(ParseRecord, MinimalRecordGetsDefaults) {
  auto parsed = ParseRecord(Minimal(), 0);
  ASSERT_TRUE(parsed.ok()) << parsed.error().Describe();
  const StepRecord& r = parsed.value();
  EXPECT_EQ(r.run, "r1");
  EXPECT_EQ(r.step, 3);
  EXPECT_EQ(r.rank, 0);
  EXPECT_EQ(r.world_size, 1);
  EXPECT_EQ(r.ga_steps, 8);
  EXPECT_EQ(r.micro_batch_size, 1);
  EXPECT_DOUBLE_EQ(r.loss, 2.5);
  EXPECT_FALSE(r.grad_norm.has_value());
  EXPECT_FALSE(r.tokens.has_value());
  EXPECT_TRUE(r.micro.empty());
  EXPECT_TRUE(r.extra.empty());
}

TEST(ParseRecord, AllFields) {
  json record = Minimal();
  record.update(
      {{"rank", 1},
       {"world_size", 4},
       {"grad_norm", 0.75},
       {"tokens", 4096},
       {"vocab_size", 32000},
       {"lr", 3e-4},
       {"ref_loss", 2.4},
       {"nonfinite_grads", 0},
       {"time", 1.7e9},
       {"micro",
        {{{"loss", 2.0}, {"tokens", 10}, {"loss_sum", 20.0}}, {{"loss", 3.0}, {"tokens", 5}}}}});
  auto parsed = ParseRecord(record, 0);
  ASSERT_TRUE(parsed.ok()) << parsed.error().Describe();
  const StepRecord& r = parsed.value();
  EXPECT_EQ(r.rank, 1);
  EXPECT_EQ(r.world_size, 4);
  EXPECT_EQ(*r.tokens, 4096);
  EXPECT_EQ(*r.vocab_size, 32000);
  EXPECT_DOUBLE_EQ(*r.lr, 3e-4);
  EXPECT_DOUBLE_EQ(*r.ref_loss, 2.4);
  EXPECT_EQ(*r.nonfinite_grads, 0);
  ASSERT_EQ(r.micro.size(), 2u);
  EXPECT_EQ(r.micro[0].tokens, 10);
  EXPECT_DOUBLE_EQ(*r.micro[0].loss_sum, 20.0);
  EXPECT_FALSE(r.micro[1].loss_sum.has_value());
}

TEST(ParseRecord, NonFiniteValuesAreKeptNotDropped) {
  json record = Minimal();
  record["loss"] = "NaN";
  record["grad_norm"] = "Infinity";
  record["ref_loss"] = "-Infinity";
  record["micro"] = {{{"loss", "NaN"}, {"tokens", 3}, {"loss_sum", "Infinity"}}};
  auto parsed = ParseRecord(record, 0);
  ASSERT_TRUE(parsed.ok()) << parsed.error().Describe();
  EXPECT_TRUE(std::isnan(parsed.value().loss));
  EXPECT_EQ(*parsed.value().grad_norm, INFINITY);
  EXPECT_EQ(*parsed.value().ref_loss, -INFINITY);
  EXPECT_TRUE(std::isnan(parsed.value().micro[0].loss));
  EXPECT_EQ(*parsed.value().micro[0].loss_sum, INFINITY);
}

TEST(ParseRecord, UnknownFieldsAreKeptVerbatim) {
  json record = Minimal();
  record["optimizer"] = {{"name", "adamw"}, {"betas", {0.9, 0.95}}};
  record["seq_len"] = 2048;
  auto parsed = ParseRecord(record, 0);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.value().extra, (json{{"optimizer", record["optimizer"]}, {"seq_len", 2048}}));
}

TEST(ParseRecord, IntegralFloatsAreIntegers) {
  json record = Minimal();
  record["step"] = 12.0;
  record["tokens"] = 4096.0;
  auto parsed = ParseRecord(record, 0);
  ASSERT_TRUE(parsed.ok()) << parsed.error().Describe();
  EXPECT_EQ(parsed.value().step, 12);
  EXPECT_EQ(ToJson(parsed.value())["step"].dump(), "12");
  record["step"] = 1e19;
  EXPECT_FALSE(ParseRecord(record, 0).ok());
}

TEST(ParseRecord, NullOptionalFieldMeansAbsent) {
  json record = Minimal();
  record["grad_norm"] = nullptr;
  auto parsed = ParseRecord(record, 0);
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed.value().grad_norm.has_value());
}

struct BadCase {
  const char* name;
  std::function<void(json&)> mutate;
  const char* field;
  const char* message_part;
};

class ParseRecordRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(ParseRecordRejects, NamesFieldAndValue) {
  json record = Minimal();
  GetParam().mutate(record);
  RecordError error = ErrorFor(record);
  EXPECT_EQ(error.record, 7u);
  EXPECT_EQ(error.field, GetParam().field);
  EXPECT_THAT(error.message, HasSubstr(GetParam().message_part));
}

INSTANTIATE_TEST_SUITE_P(
    EveryRule, ParseRecordRejects,
    ::testing::Values(
        BadCase{"missing_run", [](json& r) { r.erase("run"); }, "run", "run is required"},
        BadCase{"run_not_string", [](json& r) { r["run"] = 5; }, "run", "must be a string, but got 5"},
        BadCase{"run_empty", [](json& r) { r["run"] = ""; }, "run", "1-128 characters"},
        BadCase{"run_too_long", [](json& r) { r["run"] = std::string(129, 'a'); }, "run", "but got 129"},
        BadCase{"run_bad_char", [](json& r) { r["run"] = "a/b"; }, "run", "[A-Za-z0-9._:-]"},
        BadCase{"run_space", [](json& r) { r["run"] = "a b"; }, "run", "\"a b\""},
        BadCase{"missing_step", [](json& r) { r.erase("step"); }, "step", "step is required"},
        BadCase{"negative_step", [](json& r) { r["step"] = -1; }, "step", "must be >= 0, but got -1"},
        BadCase{"fractional_step", [](json& r) { r["step"] = 1.5; }, "step", "must be an integer, but got 1.5"},
        BadCase{"string_step", [](json& r) { r["step"] = "3"; }, "step", "must be an integer, but got \"3\""},
        BadCase{"huge_step", [](json& r) { r["step"] = 18446744073709551615ull; }, "step", "signed 64-bit"},
        BadCase{"zero_ga", [](json& r) { r["ga_steps"] = 0; }, "ga_steps", "ga_steps must be >= 1, but got 0"},
        BadCase{"missing_ga", [](json& r) { r.erase("ga_steps"); }, "ga_steps", "ga_steps is required"},
        BadCase{"zero_mbs", [](json& r) { r["micro_batch_size"] = 0; }, "micro_batch_size", "but got 0"},
        BadCase{"zero_world", [](json& r) { r["world_size"] = 0; }, "world_size", "world_size must be >= 1"},
        BadCase{"negative_rank", [](json& r) { r["rank"] = -2; }, "rank", "but got -2"},
        BadCase{"rank_ge_world", [](json& r) { r["rank"] = 2; r["world_size"] = 2; }, "rank",
                "rank must be < world_size, but got rank 2 with world_size 2"},
        BadCase{"missing_loss", [](json& r) { r.erase("loss"); }, "loss", "loss is required"},
        BadCase{"null_loss", [](json& r) { r["loss"] = nullptr; }, "loss", "send the string \"NaN\""},
        BadCase{"string_loss", [](json& r) { r["loss"] = "nan"; }, "loss", "but got \"nan\""},
        BadCase{"bool_loss", [](json& r) { r["loss"] = true; }, "loss", "but got true"},
        BadCase{"bad_grad_norm", [](json& r) { r["grad_norm"] = "big"; }, "grad_norm", "but got \"big\""},
        BadCase{"negative_tokens", [](json& r) { r["tokens"] = -1; }, "tokens", "tokens must be >= 0"},
        BadCase{"vocab_one", [](json& r) { r["vocab_size"] = 1; }, "vocab_size", "vocab_size must be >= 2"},
        BadCase{"bad_lr", [](json& r) { r["lr"] = json::array(); }, "lr", "lr must be a number"},
        BadCase{"negative_nonfinite", [](json& r) { r["nonfinite_grads"] = -3; }, "nonfinite_grads", ">= 0"},
        BadCase{"nonfinite_time", [](json& r) { r["time"] = "NaN"; }, "time", "finite number"},
        BadCase{"micro_not_array", [](json& r) { r["micro"] = 3; }, "micro", "micro must be an array"},
        BadCase{"micro_entry_not_object", [](json& r) { r["micro"] = {1}; }, "micro[0]", "must be an object"},
        BadCase{"micro_missing_tokens", [](json& r) { r["micro"] = {{{"loss", 1.0}}}; }, "micro[0].tokens",
                "micro[0].tokens is required"},
        BadCase{"micro_bad_loss", [](json& r) { r["micro"] = {{{"loss", 1.0}, {"tokens", 1}}, {{"loss", "x"}, {"tokens", 1}}}; },
                "micro[1].loss", "micro[1].loss must be a number"}),
    [](const ::testing::TestParamInfo<BadCase>& param_info) { return param_info.param.name; });

TEST(ParseRecord, NotAnObject) {
  auto parsed = ParseRecord(json::array({1, 2}), 4);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().record, 4u);
  EXPECT_THAT(parsed.error().message, HasSubstr("must be a JSON object"));
}

TEST(ParseBatch, JsonBatch) {
  std::string body = json{{"records", {Minimal(), Minimal()}}}.dump();
  auto batch = ParseBatch(body, BodyFormat::kJson);
  ASSERT_TRUE(batch.ok()) << batch.error().Describe();
  EXPECT_EQ(batch.value().size(), 2u);
}

TEST(ParseBatch, OneBadRecordRefusesTheWholeBatchAndNamesIt) {
  json bad = Minimal();
  bad["ga_steps"] = 0;
  std::string body = json{{"records", {Minimal(), Minimal(), bad, Minimal()}}}.dump();
  auto batch = ParseBatch(body, BodyFormat::kJson);
  ASSERT_FALSE(batch.ok());
  EXPECT_EQ(batch.error().record, 2u);
  EXPECT_EQ(batch.error().field, "ga_steps");
  EXPECT_EQ(batch.error().Describe(), "records[2].ga_steps: ga_steps must be >= 1, but got 0");
}

TEST(ParseBatch, MalformedJson) {
  auto batch = ParseBatch("{\"records\": [", BodyFormat::kJson);
  ASSERT_FALSE(batch.ok());
  EXPECT_FALSE(batch.error().record.has_value());
  EXPECT_THAT(batch.error().message, HasSubstr("malformed JSON"));
}

TEST(ParseBatch, WrongEnvelope) {
  EXPECT_THAT(ParseBatch("[1,2]", BodyFormat::kJson).error().message,
              HasSubstr("{\"records\": [...]}"));
  EXPECT_THAT(ParseBatch(R"({"records": 5})", BodyFormat::kJson).error().message,
              HasSubstr("records must be an array, but got 5"));
}

TEST(ParseBatch, EmptyBatchIsValid) {
  auto batch = ParseBatch(R"({"records": []})", BodyFormat::kJson);
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch.value().empty());
}

TEST(ParseBatch, NdjsonSkipsBlankLinesAndCarriageReturns) {
  std::string body = Minimal().dump() + "\r\n\n   \n" + Minimal().dump() + "\n";
  auto batch = ParseBatch(body, BodyFormat::kNdjson);
  ASSERT_TRUE(batch.ok()) << batch.error().Describe();
  EXPECT_EQ(batch.value().size(), 2u);
}

TEST(ParseBatch, NdjsonErrorNamesLineAndRecord) {
  json bad = Minimal();
  bad["loss"] = "oops";
  std::string body = Minimal().dump() + "\n\n" + bad.dump() + "\n";
  auto batch = ParseBatch(body, BodyFormat::kNdjson);
  ASSERT_FALSE(batch.ok());
  EXPECT_EQ(batch.error().record, 1u);
  EXPECT_EQ(batch.error().field, "loss");
  EXPECT_THAT(batch.error().message, HasSubstr("line 3: loss must be a number"));
}

TEST(ParseBatch, NdjsonMalformedLine) {
  auto batch = ParseBatch(Minimal().dump() + "\n{not json}\n", BodyFormat::kNdjson);
  ASSERT_FALSE(batch.ok());
  EXPECT_EQ(batch.error().record, 1u);
  EXPECT_THAT(batch.error().message, HasSubstr("line 2: malformed JSON"));
}

TEST(ParseBatch, AcceptsPythonStyleBareNonFiniteTokens) {
  // What json.dumps({"loss": float("nan")}) writes in Python.
  std::string line =
      R"({"run": "r", "step": 1, "ga_steps": 1, "micro_batch_size": 1, "loss": NaN, "grad_norm": Infinity,)"
      R"( "ref_loss": -Infinity, "note": "NaN stays a string here, as does Infinity"})";
  auto batch = ParseBatch(line, BodyFormat::kNdjson);
  ASSERT_TRUE(batch.ok()) << batch.error().Describe();
  const StepRecord& r = batch.value()[0];
  EXPECT_TRUE(std::isnan(r.loss));
  EXPECT_EQ(*r.grad_norm, INFINITY);
  EXPECT_EQ(*r.ref_loss, -INFINITY);
  EXPECT_EQ(r.extra["note"], "NaN stays a string here, as does Infinity");
}

TEST(ParseBatch, BareTokenInsideAStringIsNotRewritten) {
  // The only bare NaN is invalid JSON for other reasons; the retry must not "fix" strings.
  auto batch =
      ParseBatch(R"({"records": [{"run": "NaN", "x": "Infinity]"}, NaNx]})", BodyFormat::kJson);
  ASSERT_FALSE(batch.ok());
  EXPECT_THAT(batch.error().message, HasSubstr("malformed JSON"));
}

TEST(BodyFormat, FromContentType) {
  EXPECT_EQ(BodyFormatFromContentType("application/json"), BodyFormat::kJson);
  EXPECT_EQ(BodyFormatFromContentType("Application/JSON; charset=utf-8"), BodyFormat::kJson);
  EXPECT_EQ(BodyFormatFromContentType("application/x-ndjson"), BodyFormat::kNdjson);
  EXPECT_EQ(BodyFormatFromContentType("text/plain"), std::nullopt);
  EXPECT_EQ(BodyFormatFromContentType(""), std::nullopt);
}

}  // namespace record_codec_test
}  // namespace lossguard::wire

namespace lossguard::wire {
namespace record_codec_test {

// The same vectors are checked against schema/step-record.schema.json by
// tests/schema/check_schema.py.
TEST(SchemaVectors, ParserAgreesWithEveryVector) {
  std::ifstream in(std::string(LOSSGUARD_SOURCE_DIR) + "/tests/schema/vectors.json");
  ASSERT_TRUE(in) << "cannot read tests/schema/vectors.json";
  nlohmann::json suite = nlohmann::json::parse(in);
  ASSERT_GE(suite["vectors"].size(), 30u);
  for (const nlohmann::json& vector : suite["vectors"]) {
    nlohmann::json record = suite["base"];
    if (vector.contains("set")) record.update(vector["set"]);
    if (vector.contains("unset")) {
      for (const auto& key : vector["unset"]) record.erase(key.get<std::string>());
    }
    auto parsed = ParseRecord(record, 0);
    EXPECT_EQ(parsed.ok(), vector["valid"].get<bool>())
        << vector["why"] << ": " << (parsed.ok() ? "accepted" : parsed.error().Describe());
  }
}

}  // namespace record_codec_test
}  // namespace lossguard::wire
