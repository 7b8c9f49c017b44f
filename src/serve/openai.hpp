#pragma once
// The OpenAI API as the engine emulator and the gateway speak it: parsing and checking request
// bodies, counting prompt tokens, error bodies, and the chunks of a streamed response.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace infergrid::serve {

// An OpenAI error: HTTP status plus the body's type, message, param and code.
struct ApiError {
  int status = 400;
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;
  std::string code;
};
std::string error_body(const ApiError& e);  // {"error": {...}}

enum class Endpoint { kChat, kCompletions };

struct ApiRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;
  bool stream = false;
  bool include_usage = false;
  std::int32_t prompt_tokens = 0;   // by the rule of count_prompt_tokens
  std::int32_t max_tokens = -1;     // -1: not given
  int priority = 1;                 // 0 critical, 1 interactive, 2 batch (header or body)
  bool priority_claimed = false;    // the body named a priority
  int body_priority = -1;           // ... this one (clamped to 0-2); -1: none
  int n = 1;                        // choices asked for
  std::string user;                 // OpenAI's end-user id: the gateway's session for prefix affinity
};

// Parses a /v1/chat/completions or /v1/completions body. Limits: 8 MiB bodies (checked by the
// server), 100,000 messages, 1,000,000 prompt tokens. Sampling parameters are checked as OpenAI
// checks them (type and range: temperature [0, 2], top_p [0, 1], n [1, 128], penalties [-2, 2],
// stop a string or up to 4 strings, tools a list of functions, ...). Returns the error otherwise.
std::optional<ApiError> parse_request(std::string_view body, Endpoint ep, ApiRequest& out);

// An engine's scheduler settings, as a controller's Schedule sets them (POST /admin/schedule).
struct EngineSchedule {
  double step_target_s = 0;    // [0, 10]
  double prefill_reserve = 0;  // [0, 0.95]
  bool priority = true;
};
// A body {"step_target_s", "prefill_reserve", "priority"} (each optional) over `inout`; on an
// error `inout` is left as it was and the error names the field.
std::optional<ApiError> parse_schedule(std::string_view body, EngineSchedule& inout);

// The documented rule (docs/serve.md): one token per 4 bytes of text, rounded up, plus 4 per
// chat message for its role and separators, plus 3 for the assistant's reply priming.
std::int32_t count_text_tokens(std::string_view text);

// "critical" | "interactive" | "batch" -> 0 | 1 | 2; nothing for anything else.
std::optional<int> parse_priority(std::string_view s);

// Filler text for output token i (a word with its leading space).
std::string_view filler_token(std::int64_t i);

// One SSE event ("data: ...\n\n") of a streamed response.
std::string sse_chunk(Endpoint ep, const std::string& id, const std::string& model, std::int64_t created,
                      std::string_view delta, const char* finish_reason, bool first);
std::string sse_usage(Endpoint ep, const std::string& id, const std::string& model, std::int64_t created,
                      std::int32_t prompt, std::int32_t completion);
std::string sse_error(const ApiError& e);  // data: {"error": ...}
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
// A whole (non-streamed) response.
std::string full_response(Endpoint ep, const std::string& id, const std::string& model, std::int64_t created,
                          const std::string& text, std::int32_t prompt, std::int32_t completion,
                          const char* finish_reason);

}  // namespace infergrid::serve
