#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "core/error.hpp"
#include "core/paths.hpp"
#include "workload/generator.hpp"
#include "workload/trace.hpp"

using namespace infergrid;
using workload::Request;
using workload::TraceFormat;

namespace {
std::string write(const std::string& name, const std::string& body) {
  const std::string path = testing::TempDir() + "/" + name;
  std::ofstream(path) << body;
  return path;
}
std::vector<Request> read_all(const std::string& path, TraceFormat f) {
  auto src = workload::open_trace(path, f);
  std::vector<Request> v;
  Request r;
  while (src->next(r)) v.push_back(r);
  return v;
}
std::string error_of(const std::string& path, TraceFormat f) {
  try {
    read_all(path, f);
  } catch (const core::InputError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Trace, Timestamps) {
  core::Ns t = 0;
  ASSERT_TRUE(workload::parse_timestamp("1970-01-02 00:00:01.5", t));
  EXPECT_EQ(t, 86401'500'000'000LL);
  ASSERT_TRUE(workload::parse_timestamp("2024-05-10 00:00:00.009930+00:00", t));
  core::Ns u = 0;
  ASSERT_TRUE(workload::parse_timestamp("2024-05-10 02:00:00.009930+02:00", u));
  EXPECT_EQ(t, u);
  EXPECT_FALSE(workload::parse_timestamp("2024-13-10 00:00:00", t));
  EXPECT_FALSE(workload::parse_timestamp("yesterday", t));
  EXPECT_FALSE(workload::parse_timestamp("2024-05-10 00:00:00.", t));
}

TEST(Trace, AzureConversationEmbedded) {
  const std::string path = core::data_dir() + "/traces/AzureLLMInferenceTrace_conv.csv";
  EXPECT_EQ(workload::detect_trace_format(path), TraceFormat::kAzure);
  const auto v = read_all(path, TraceFormat::kAzure);
  ASSERT_EQ(v.size(), 19366u);
  EXPECT_EQ(v[0].arrival, 0);
  EXPECT_EQ(v[0].prompt_tokens, 374);
  EXPECT_EQ(v[0].output_tokens, 44);
  EXPECT_EQ(v[1].arrival, 4'314'579'000LL);  // 18:15:50.9951690 - 18:15:46.6805900
  EXPECT_GT(v.back().arrival, 3000LL * core::kNsPerSec);
}

TEST(Trace, AzureMultimodalBurstGptAndMooncake) {
  auto mm = read_all(write("mm.csv", "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n"
                                     "2024-10-15 00:00:00.000000+00:00,2,1500,30\n"
                                     "2024-10-15 00:00:01.250000+00:00,0,20,5\n"),
                     TraceFormat::kAzureMm);
  ASSERT_EQ(mm.size(), 2u);
  EXPECT_EQ(mm[0].images, 2);
  EXPECT_EQ(mm[1].arrival, 1'250'000'000);
  auto bg = read_all(write("bg.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                                     "5,ChatGPT,472,18,490,Conversation log\n"
                                     "7.5,GPT-4,1087,0,1087,Conversation log\n"),
                     TraceFormat::kBurstGpt);
  ASSERT_EQ(bg.size(), 2u);
  EXPECT_EQ(bg[1].arrival, 2'500'000'000);
  EXPECT_EQ(bg[1].output_tokens, 1);  // a failed response still had its prefill
  const std::string moon = core::data_dir() + "/traces/mooncake_conversation_trace.jsonl";
  EXPECT_EQ(workload::detect_trace_format(moon), TraceFormat::kMooncake);
  auto mc = read_all(moon, TraceFormat::kMooncake);
  ASSERT_EQ(mc.size(), 12031u);
  EXPECT_EQ(mc[0].prompt_tokens, 6758);
  EXPECT_EQ(mc[0].block_hashes.size(), 14u);
  EXPECT_EQ(mc[0].hash_block_tokens, 512);
}

TEST(Trace, BadLinesNameFileLineAndField) {
  auto e = error_of(write("bad1.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                      "2023-11-16 18:15:46.68,374,44\n"
                                      "2023-11-16 18:15:47.00,abc,44\n"),
                    TraceFormat::kAzure);
  EXPECT_NE(e.find("bad1.csv:3: field 'ContextTokens'"), std::string::npos) << e;
  e = error_of(write("bad2.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374\n"),
               TraceFormat::kAzure);
  EXPECT_NE(e.find("bad2.csv:2"), std::string::npos) << e;
  e = error_of(write("bad3.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                 "2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:40.00,1,1\n"),
               TraceFormat::kAzure);
  EXPECT_NE(e.find("bad3.csv:3: field 'TIMESTAMP': timestamps must be non-decreasing"), std::string::npos) << e;
  e = error_of(write("bad4.jsonl", "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 1}\n"
                                   "{\"timestamp\": 5, \"input_length\": -3, \"output_length\": 1}\n"),
               TraceFormat::kMooncake);
  EXPECT_NE(e.find("bad4.jsonl:2: field 'input_length'"), std::string::npos) << e;
  e = error_of(write("bad5.jsonl", "{\"timestamp\": 0, \"input_length\": 10\n"), TraceFormat::kMooncake);
  EXPECT_NE(e.find("bad5.jsonl:1"), std::string::npos) << e;
  e = error_of(write("bad6.csv", "Timestamp,Model,Request tokens\n1,x,2\n"), TraceFormat::kBurstGpt);
  EXPECT_NE(e.find("field 'Response tokens': missing column"), std::string::npos) << e;
}

TEST(Generator, PoissonAndGammaRatesAndVariability) {
  for (double cv : {1.0, 2.0, 0.5}) {
    workload::GeneratorSpec g;
    g.rate = 50;
    g.cv = cv;
    g.count = 200000;
    g.seed = 3;
    auto src = workload::make_generator(g);
    Request r;
    double prev = 0, sum = 0, sum2 = 0;
    std::uint64_t n = 0;
    while (src->next(r)) {
      const double t = core::to_seconds(r.arrival), d = t - prev;
      prev = t;
      sum += d;
      sum2 += d * d;
      ++n;
    }
    const double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
    EXPECT_NEAR(1 / mean, 50, 50 * 0.01) << cv;
    EXPECT_NEAR(sd / mean, cv, cv * 0.03) << cv;
  }
}

TEST(Generator, PiecewiseRateScheduleAndLengths) {
  workload::GeneratorSpec g;
  g.schedule = workload::GeneratorSpec::parse_schedule("0:10,100:100,200:0,300:20");
  g.count = 100000;
  g.prompt = workload::LengthDist::parse("lognormal:800:1.5", "prompt-dist");
  g.output = workload::LengthDist::parse("exponential:200", "output-dist");
  auto src = workload::make_generator(g);
  Request r;
  int in_first = 0, in_second = 0, in_gap = 0;
  double ps = 0, os = 0;
  int n = 0;
  while (src->next(r)) {
    const double t = core::to_seconds(r.arrival);
    if (t < 100) ++in_first;
    else if (t < 200) ++in_second;
    else if (t < 300) ++in_gap;
    ps += r.prompt_tokens;
    os += r.output_tokens;
    ++n;
  }
  EXPECT_NEAR(in_first, 1000, 120);
  EXPECT_NEAR(in_second, 10000, 400);
  EXPECT_EQ(in_gap, 0);
  EXPECT_NEAR(ps / n / 800, 1, 0.03);
  EXPECT_NEAR(os / n / 200, 1, 0.02);
  EXPECT_THROW(workload::LengthDist::parse("normal:3", "prompt-dist"), core::InputError);
  EXPECT_THROW(workload::GeneratorSpec::parse_schedule("5:10"), core::InputError);
  EXPECT_THROW(workload::GeneratorSpec::parse_schedule("0:10,0:5"), core::InputError);
}
