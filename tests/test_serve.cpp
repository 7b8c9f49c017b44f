// The live fabric's pure pieces: request checks, error bodies, the SSE reader, key digests.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/gateway.hpp"
#include "serve/openai.hpp"
#include "serve/sse.hpp"

using namespace infergrid::serve;

TEST(OpenAi, ErrorBodiesNeverThrowOnInvalidUtf8) {
  const std::string msg = std::string("unknown path /caf") + '\xe9' + '\xff';
  const auto body = error_body({404, "invalid_request_error", msg, "", "not_found"});
  const auto j = nlohmann::json::parse(body);
  EXPECT_EQ(j["error"]["message"], "unknown path /caf\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_NO_THROW(sse_error({502, "bad_gateway", msg, "", ""}));
}

TEST(OpenAi, SamplingParametersAreCheckedAsOpenAiChecksThem) {
  auto param = [](const std::string& extra) {
    ApiRequest r;
    const auto e = parse_request(R"({"model":"m","messages":[{"role":"user","content":"x"}])" + extra + "}", Endpoint::kChat, r);
    return e ? e->param : std::string("ok");
  };
  EXPECT_EQ(param(R"(,"temperature":"hot")"), "temperature");
  EXPECT_EQ(param(R"(,"temperature":-5)"), "temperature");
  EXPECT_EQ(param(R"(,"temperature":2)"), "ok");
  EXPECT_EQ(param(R"(,"top_p":"x")"), "top_p");
  EXPECT_EQ(param(R"(,"n":1000)"), "n");
  EXPECT_EQ(param(R"(,"n":3)"), "ok");
  EXPECT_EQ(param(R"(,"stop":123)"), "stop");
  EXPECT_EQ(param(R"(,"stop":["a","b"])"), "ok");
  EXPECT_EQ(param(R"(,"tools":"x")"), "tools");
  EXPECT_EQ(param(R"(,"tools":[{"type":"function","function":{"name":"f"}}])"), "ok");
  EXPECT_EQ(param(R"(,"logit_bias":{"1":200})"), "logit_bias");
  ApiRequest r;
  ASSERT_FALSE(parse_request(R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":3,"priority":0})", Endpoint::kChat, r));
  EXPECT_EQ(r.n, 3);
  EXPECT_TRUE(r.priority_claimed);
}

TEST(Sse, WholeEventsOutAcrossArbitrarySplits) {
  const std::string stream =
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n"
      ": keep-alive\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\r\n\r\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n"
      "data: [DONE]\n\n";
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    SseReader r;
    std::string out;
    ASSERT_TRUE(r.feed(stream.substr(0, cut), out));
    ASSERT_TRUE(r.feed(stream.substr(cut), out));
    EXPECT_EQ(out, stream);
    EXPECT_TRUE(r.done());
    EXPECT_FALSE(r.pending());
    EXPECT_EQ(r.events(), 5);
    EXPECT_EQ(r.completion_tokens(), 2);
    EXPECT_EQ(r.usage_prompt_tokens(), 7);
  }
}

TEST(Sse, InvalidEventsStopTheRelayOnABoundary) {
  SseReader r;
  std::string out;
  EXPECT_TRUE(r.feed("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"x\":", out));
  EXPECT_TRUE(r.pending());
  EXPECT_EQ(r.completion_tokens(), 1);
  EXPECT_FALSE(r.feed("1}\n\ndata: not json\n\n", out));
  EXPECT_NE(r.error().find("not a JSON object"), std::string::npos);
  EXPECT_EQ(out, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"x\":1}\n\n");
  SseReader html;
  EXPECT_FALSE(html.feed("<html>\n\n", out));
  SseReader after;
  EXPECT_FALSE(after.feed("data: [DONE]\n\ndata: {}\n\n", out));
  SseReader big(64);
  EXPECT_FALSE(big.feed("data: " + std::string(100, 'x'), out));
}

TEST(Tenants, KeysAreStoredAsSha256) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
