#include "serve/openai.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <nlohmann/json.hpp>

namespace infergrid::serve {

using json = nlohmann::json;

std::string error_body(const ApiError& e) {
  json j;
  j["error"]["message"] = e.message;
  j["error"]["type"] = e.type;
  j["error"]["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  j["error"]["code"] = e.code.empty() ? json(nullptr) : json(e.code);
  // Messages quote what the client sent (a path, a header): invalid UTF-8 becomes U+FFFD, never
  // an exception.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::int32_t count_text_tokens(std::string_view text) {
  return static_cast<std::int32_t>((text.size() + 3) / 4);
}

std::optional<int> parse_priority(std::string_view s) {
  if (s == "critical") return 0;
  if (s == "interactive") return 1;
  if (s == "batch") return 2;
  return std::nullopt;
}

namespace {

ApiError bad(const std::string& msg, const std::string& param) {
  return ApiError{400, "invalid_request_error", msg, param, ""};
}

// Text of a message's content: a string, or a list of parts whose text parts count (an image
// part counts as 765 tokens, OpenAI's figure for a high-detail 1024 x 1024 image).
std::optional<ApiError> content_tokens(const json& c, std::int64_t& tokens) {
  if (c.is_null()) return std::nullopt;
  if (c.is_string()) {
    tokens += count_text_tokens(c.get_ref<const std::string&>());
    return std::nullopt;
  }
  if (!c.is_array()) return bad("'content' must be a string or a list of parts", "messages");
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      return bad("each content part needs a 'type'", "messages");
    const auto& type = part["type"].get_ref<const std::string&>();
    if (type == "text") {
      if (!part.contains("text") || !part["text"].is_string()) return bad("a text part needs 'text'", "messages");
      tokens += count_text_tokens(part["text"].get_ref<const std::string&>());
    } else if (type == "image_url" || type == "input_audio") {
      tokens += 765;
    } else {
      return bad("unknown content part type '" + type + "'", "messages");
    }
  }
  return std::nullopt;
}

// A number (integers too) in [lo, hi], or null / absent.
std::optional<ApiError> number_in(const json& j, const char* key, double lo, double hi) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const auto& v = j[key];
  if (!v.is_number()) return bad(std::string("'") + key + "' must be a number", key);
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi))
    return bad(fmt::format("{} is not in [{}, {}] - '{}'", v.dump(), lo, hi, key), key);
  return std::nullopt;
}

std::optional<ApiError> integer_in(const json& j, const char* key, std::int64_t lo, std::int64_t hi) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const auto& v = j[key];
  if (!v.is_number_integer()) return bad(std::string("'") + key + "' must be an integer", key);
  const auto x = v.get<std::int64_t>();
  if (x < lo || x > hi) return bad(fmt::format("{} is not in [{}, {}] - '{}'", x, lo, hi, key), key);
  return std::nullopt;
}

std::optional<ApiError> of_type(const json& j, const char* key, bool (json::*is)() const noexcept, const char* what) {
  if (!j.contains(key) || j[key].is_null() || (j[key].*is)()) return std::nullopt;
  return bad(std::string("'") + key + "' must be " + what, key);
}

// The sampling and tool parameters OpenAI documents, checked for type and range.
std::optional<ApiError> check_parameters(const json& j, Endpoint ep) {
  if (auto e = number_in(j, "temperature", 0, 2)) return e;
  if (auto e = number_in(j, "top_p", 0, 1)) return e;
  if (auto e = number_in(j, "presence_penalty", -2, 2)) return e;
  if (auto e = number_in(j, "frequency_penalty", -2, 2)) return e;
  if (auto e = integer_in(j, "n", 1, 128)) return e;
  if (auto e = integer_in(j, "seed", INT64_MIN, INT64_MAX)) return e;
  if (auto e = of_type(j, "user", &json::is_string, "a string")) return e;
  if (auto e = of_type(j, "logit_bias", &json::is_object, "an object")) return e;
  if (j.contains("logit_bias") && j["logit_bias"].is_object())
    for (const auto& [k, v] : j["logit_bias"].items())
      if (!v.is_number() || v.get<double>() < -100 || v.get<double>() > 100)
        return bad("logit_bias values must be numbers in [-100, 100]", "logit_bias");
  if (j.contains("stop") && !j["stop"].is_null()) {
    const auto& st = j["stop"];
    const bool ok = st.is_string() || (st.is_array() && st.size() <= 4 &&
                                       std::all_of(st.begin(), st.end(), [](const json& x) { return x.is_string(); }));
    if (!ok) return bad("'stop' must be a string or a list of at most 4 strings", "stop");
  }
  if (ep == Endpoint::kChat) {
    if (auto e = of_type(j, "logprobs", &json::is_boolean, "a boolean")) return e;
    if (auto e = integer_in(j, "top_logprobs", 0, 20)) return e;
    if (auto e = of_type(j, "response_format", &json::is_object, "an object")) return e;
    if (j.contains("response_format") && j["response_format"].is_object()) {
      const auto& rf = j["response_format"];
      if (!rf.contains("type") || !rf["type"].is_string() ||
          (rf["type"] != "text" && rf["type"] != "json_object" && rf["type"] != "json_schema"))
        return bad("'response_format.type' must be text, json_object or json_schema", "response_format");
    }
    if (j.contains("tools") && !j["tools"].is_null()) {
      const auto& tools = j["tools"];
      if (!tools.is_array()) return bad("'tools' must be a list", "tools");
      if (tools.size() > 128) return bad("'tools' holds at most 128 functions", "tools");
      for (const auto& t : tools)
        if (!t.is_object() || !t.contains("type") || t["type"] != "function" || !t.contains("function") ||
            !t["function"].is_object() || !t["function"].contains("name") || !t["function"]["name"].is_string())
          return bad("each tool must be {\"type\": \"function\", \"function\": {\"name\": ...}}", "tools");
    }
    if (j.contains("tool_choice") && !j["tool_choice"].is_null()) {
      const auto& tc = j["tool_choice"];
      const bool ok = (tc.is_string() && (tc == "none" || tc == "auto" || tc == "required")) ||
                      (tc.is_object() && tc.contains("type") && tc["type"] == "function");
      if (!ok) return bad("'tool_choice' must be none, auto, required or a function", "tool_choice");
    }
  } else {
    if (auto e = integer_in(j, "logprobs", 0, 5)) return e;
    if (auto e = of_type(j, "echo", &json::is_boolean, "a boolean")) return e;
    if (auto e = integer_in(j, "best_of", 1, 20)) return e;
    if (auto e = of_type(j, "suffix", &json::is_string, "a string")) return e;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_request(std::string_view body, Endpoint ep, ApiRequest& out) {
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) return bad("the request body is not valid JSON", "");
  if (!j.is_object()) return bad("the request body must be a JSON object", "");
  out = ApiRequest{};
  out.endpoint = ep;
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get_ref<const std::string&>().empty())
    return bad("you must provide a model parameter", "model");
  out.model = j["model"].get<std::string>();
  if (j.contains("user") && j["user"].is_string()) out.user = j["user"].get<std::string>();
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) return bad("'stream' must be a boolean", "stream");
    out.stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const auto& so = j["stream_options"];
    if (!so.is_object()) return bad("'stream_options' must be an object", "stream_options");
    if (!out.stream) return bad("'stream_options' is only allowed when 'stream' is true", "stream_options");
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean()) return bad("'include_usage' must be a boolean", "stream_options");
      out.include_usage = so["include_usage"].get<bool>();
    }
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    if (!j[key].is_number_integer() || j[key].get<std::int64_t>() < 1 || j[key].get<std::int64_t>() > 1'000'000)
      return bad(std::string("'") + key + "' must be an integer in [1, 1000000]", key);
    out.max_tokens = static_cast<std::int32_t>(j[key].get<std::int64_t>());
  }
  if (j.contains("priority") && !j["priority"].is_null()) {  // vLLM's extension: lower is sooner
    if (!j["priority"].is_number_integer()) return bad("'priority' must be an integer", "priority");
    out.priority = static_cast<int>(std::clamp<std::int64_t>(j["priority"].get<std::int64_t>(), 0, 2));
    out.priority_claimed = true;
    out.body_priority = out.priority;
  }
  if (auto e = check_parameters(j, ep)) return e;
  if (j.contains("n") && j["n"].is_number_integer()) out.n = static_cast<int>(j["n"].get<std::int64_t>());
  std::int64_t tokens = 0;
  if (ep == Endpoint::kChat) {
    if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
      return bad("'messages' must be a non-empty list", "messages");
    if (j["messages"].size() > 100'000) return bad("too many messages", "messages");
    for (const auto& m : j["messages"]) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        return bad("each message needs a 'role'", "messages");
      const auto& role = m["role"].get_ref<const std::string&>();
      if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
        return bad("unknown role '" + role + "'", "messages");
      if (!m.contains("content") && role != "assistant") return bad("a message needs 'content'", "messages");
      if (m.contains("content"))
        if (auto e = content_tokens(m["content"], tokens)) return e;
      tokens += 4;
    }
    tokens += 3;
  } else {
    if (!j.contains("prompt")) return bad("you must provide a prompt", "prompt");
    const auto& p = j["prompt"];
    if (p.is_string()) {
      tokens = count_text_tokens(p.get_ref<const std::string&>());
    } else if (p.is_array()) {
      for (const auto& x : p) {
        if (x.is_string()) tokens += count_text_tokens(x.get_ref<const std::string&>());
        else if (x.is_number_integer()) tokens += 1;  // a token id
        else return bad("'prompt' must be a string, a list of strings or a list of token ids", "prompt");
      }
    } else {
      return bad("'prompt' must be a string, a list of strings or a list of token ids", "prompt");
    }
  }
  if (tokens > 1'000'000) return bad("the prompt is longer than 1,000,000 tokens", "messages");
  out.prompt_tokens = static_cast<std::int32_t>(std::max<std::int64_t>(1, tokens));
  return std::nullopt;
}

std::string_view filler_token(std::int64_t i) {
  static constexpr std::array<std::string_view, 16> kWords = {
      " the", " fabric", " routes", " every", " request", " to", " a", " site", " where",
      " compute", " network", " and", " power", " agree", ",", "."};
  return kWords[static_cast<std::size_t>(i) % kWords.size()];
}

namespace {
json envelope(Endpoint ep, const std::string& id, const std::string& model, std::int64_t created, bool chunk) {
  json j;
  j["id"] = id;
  j["object"] = ep == Endpoint::kChat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  j["created"] = created;
  j["model"] = model;
  return j;
}
}  // namespace

std::string sse_chunk(Endpoint ep, const std::string& id, const std::string& model, std::int64_t created,
                      std::string_view delta, const char* finish_reason, bool first) {
  json j = envelope(ep, id, model, created, true);
  json choice;
  choice["index"] = 0;
  if (ep == Endpoint::kChat) {
    json d = json::object();
    if (first) d["role"] = "assistant";
    if (!delta.empty() || !finish_reason) d["content"] = std::string(delta);
    choice["delta"] = d;
  } else {
    choice["text"] = std::string(delta);
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason ? json(finish_reason) : json(nullptr);
  j["choices"] = json::array({choice});
  return "data: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

std::string sse_usage(Endpoint ep, const std::string& id, const std::string& model, std::int64_t created,
                      std::int32_t prompt, std::int32_t completion) {
  json j = envelope(ep, id, model, created, true);
  j["choices"] = json::array();
  j["usage"] = {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
  return "data: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

std::string sse_error(const ApiError& e) { return "data: " + error_body(e) + "\n\n"; }

std::string full_response(Endpoint ep, const std::string& id, const std::string& model, std::int64_t created,
                          const std::string& text, std::int32_t prompt, std::int32_t completion,
                          const char* finish_reason) {
  json j = envelope(ep, id, model, created, false);
  json choice;
  choice["index"] = 0;
  if (ep == Endpoint::kChat) choice["message"] = {{"role", "assistant"}, {"content", text}};
  else choice["text"] = text;
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason;
  j["choices"] = json::array({choice});
  j["usage"] = {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<ApiError> parse_schedule(std::string_view body, EngineSchedule& inout) {
  const auto fail = [](std::string message, std::string param = {}) {
    ApiError e;
    e.message = std::move(message);
    e.param = std::move(param);
    return std::optional<ApiError>(std::move(e));
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const std::exception&) {
    return fail("the body is not JSON");
  }
  if (!j.is_object()) return fail("the body must be a JSON object");
  EngineSchedule s = inout;
  for (const auto& [k, v] : j.items()) {
    if (k == "step_target_s" || k == "prefill_reserve") {
      const double hi = k == "step_target_s" ? 10.0 : 0.95;
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0 || v.get<double>() > hi)
        return fail(fmt::format("'{}' must be a number in [0, {}]", k, hi), k);
      (k == "step_target_s" ? s.step_target_s : s.prefill_reserve) = v.get<double>();
    } else if (k == "priority") {
      if (!v.is_boolean()) return fail("'priority' must be true or false", k);
      s.priority = v.get<bool>();
    } else {
      return fail(fmt::format("unknown field '{}' (expected step_target_s, prefill_reserve, priority)", k), k);
    }
  }
  inout = s;
  return std::nullopt;
}

}  // namespace infergrid::serve
