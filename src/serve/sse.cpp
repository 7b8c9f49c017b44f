#include "serve/sse.hpp"

#include <nlohmann/json.hpp>

namespace infergrid::serve {

using json = nlohmann::json;

bool SseReader::check(std::string_view ev) {
  std::string data;
  bool has_data = false;
  std::size_t p = 0;
  while (p < ev.size()) {
    std::size_t e = ev.find('\n', p);
    if (e == std::string_view::npos) e = ev.size();
    std::string_view line = ev.substr(p, e - p);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    p = e + 1;
    if (line.empty() || line.front() == ':') continue;  // blank or a comment (keep-alive)
    const auto colon = line.find(':');
    const std::string_view field = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (field == "data") {
      if (has_data) data += '\n';
      data += value;
      has_data = true;
    } else if (field != "event" && field != "id" && field != "retry") {
      error_ = "the backend sent an SSE line that is not a field: '" + std::string(line.substr(0, 80)) + "'";
      return false;
    }
  }
  if (!has_data) return true;
  if (done_) {
    error_ = "the backend sent data after [DONE]";
    return false;
  }
  if (data == "[DONE]") {
    done_ = true;
    return true;
  }
  json j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error_ = "the backend sent an SSE event that is not a JSON object";
    return false;
  }
  if (j.contains("error")) return true;  // the backend's own error event: relayed as it is
  if (const auto u = j.find("usage"); u != j.end() && u->is_object()) {
    if (u->contains("completion_tokens") && (*u)["completion_tokens"].is_number_integer())
      usage_completion_ = (*u)["completion_tokens"].get<std::int64_t>();
    if (u->contains("prompt_tokens") && (*u)["prompt_tokens"].is_number_integer())
      usage_prompt_ = (*u)["prompt_tokens"].get<std::int64_t>();
  }
  if (const auto c = j.find("choices"); c != j.end() && c->is_array())
    for (const auto& ch : *c) {
      if (!ch.is_object()) continue;
      const auto d = ch.find("delta");
      const bool chat_token = d != ch.end() && d->is_object() && d->contains("content") && (*d)["content"].is_string() &&
                              !(*d)["content"].get_ref<const std::string&>().empty();
      const auto t = ch.find("text");
      const bool text_token = t != ch.end() && t->is_string() && !t->get_ref<const std::string&>().empty();
      if (chat_token || text_token) ++deltas_;
    }
  return true;
}

bool SseReader::feed(std::string_view data, std::string& out) {
  if (!error_.empty()) return false;
  buf_.append(data);
  std::size_t start = 0;
  for (;;) {
    // An event ends at a blank line: "\n\n" (or "\r\n\r\n").
    std::size_t e = buf_.find("\n\n", start);
    std::size_t e2 = buf_.find("\r\n\r\n", start);
    std::size_t end;
    if (e == std::string::npos && e2 == std::string::npos) break;
    if (e2 != std::string::npos && (e == std::string::npos || e2 < e)) end = e2 + 4;
    else end = e + 2;
    const std::string_view ev(buf_.data() + start, end - start);
    if (!check(ev)) {
      buf_.clear();
      return false;
    }
    ++events_;
    out.append(ev);
    start = end;
  }
  buf_.erase(0, start);
  if (buf_.size() > max_) {
    error_ = "the backend sent an SSE event longer than the limit";
    buf_.clear();
    return false;
  }
  return true;
}

}  // namespace infergrid::serve
