// One proxied request: admission by class (and fairness between tenants), the site by the
// policy, the backend in it, then the upstream exchange with every answer checked, retries while
// nothing has reached the client, stall detection, backpressure, and the client leaving.
#include <fmt/format.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cmath>
#include <nlohmann/json.hpp>

#include "net/fiber.hpp"
#include "control/balancer.hpp"
#include "serve/gateway_state.hpp"
#include "serve/openai.hpp"
#include "serve/sse.hpp"
#include "serve/upstream.hpp"

namespace infergrid::serve {

namespace net = boost::asio;
namespace beast = boost::beast;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kChargeBatch = 64;  // streamed tokens past the reservation, charged in batches

struct Call : std::enable_shared_from_this<Call> {
  Call(std::shared_ptr<Gateway> g, std::shared_ptr<Reply> r, CallSpec sp)
      : gw(std::move(g)), reply(std::move(r)), s(std::move(sp)), strand(net::make_strand(gw->ioc())), stall(strand),
        t0(Clock::now()) {}

  std::shared_ptr<Gateway> gw;
  std::shared_ptr<Reply> reply;
  CallSpec s;
  net::strand<net::io_context::executor_type> strand;
  net::steady_timer stall;
  Clock::time_point t0;
  std::vector<std::size_t> tried;
  std::size_t backend = 0;
  int site = -1, attempts = 0, status = 0, last_status = 502;
  json candidates = json::array();
  std::string why, score_name, last_cause;
  // Upstream, per try.
  std::shared_ptr<Upstream> up;
  std::uint64_t gen = 0;  // the current try; callbacks of an older one are ignored
  beast::flat_buffer buf;
  beast::http::request<beast::http::string_body> ureq;
  std::optional<beast::http::response_parser<beast::http::buffer_body>> parser;
  std::array<char, 16384> chunk{};
  bool got_header = false;
  double progress_seen = -1;
  // The answer.
  SseReader sse;
  bool started = false, finished = false, counted_inflight = false;
  std::string whole;
  double ttft_ms = -1;
  std::int64_t charged_output = 0, vtc_tokens = 0;
  // Admission.
  net::steady_timer wait_timer{strand};
  std::uint64_t ticket = 0;
  bool admitted = false, waiting = false;
  double queued_ms = 0;
  std::uint64_t request_number = 0;

  void start() {
    auto self = shared_from_this();
    gw->vtc_begin(s.priority, s.tenant);
    reply->on_close([self] { net::post(self->strand, [self] { self->client_left(); }); });
    net::dispatch(strand, [self] {
      if (self->pick()) self->connect();
    });
  }

  // ---- choosing ----

  bool usable(std::size_t i) const {
    return gw->serves(i, s.model) && gw->available(i) &&
           std::find(tried.begin(), tried.end(), i) == tried.end();
  }

  // One view per site with a usable backend for the model; capacity and load over them.
  void build_views(const Snapshot& snap, std::vector<control::SiteView>& views, std::vector<int>& view_site, double& cap,
                   double& load) {
    const auto& cfg = gw->cfg();
    const infergrid::net::FiberModel& rtt = infergrid::net::FiberModel::builtin();
    candidates = json::array();
    // A controller's routing weight 0 takes a site out while another candidate remains.
    for (int pass = 0; pass < 2 && views.empty(); ++pass)
    for (std::size_t st = 0; st < cfg.sites.size(); ++st) {
      if (pass == 0 && gw->control().site_excluded(static_cast<int>(st))) continue;
      control::SiteView v;
      v.site = static_cast<int>(st);
      double best_rtt = 1e300, kv = 0;
      for (std::size_t i = 0; i < gw->backends(); ++i) {
        if (gw->site_of(i) != static_cast<int>(st) || !usable(i)) continue;
        const auto& o = snap.backends[i];
        const int own = gw->live(i).inflight.load();
        cap += static_cast<double>(gw->backend(i).max_concurrency) / cfg.processes;
        load += own;
        ++v.replicas;
        v.outstanding += std::max(own, static_cast<int>(o.running + o.waiting));
        v.waiting += static_cast<int>(o.waiting);
        kv += o.kv;
        best_rtt = std::min(best_rtt, o.rtt_ms);
      }
      if (v.replicas == 0) continue;
      v.kv_usage = kv / v.replicas;
      v.prefix_hit = gw->prefix_hit(s.session, static_cast<int>(st), s.prompt_tokens);
      v.rtt_ms = rtt.rtt_ms(s.client, cfg.sites[st].location) + (best_rtt < 1e299 ? best_rtt : 0);
      views.push_back(v);
      view_site.push_back(static_cast<int>(st));
      candidates.push_back({{"site", cfg.sites[st].name}, {"rtt_ms", std::round(v.rtt_ms * 100) / 100},
                            {"outstanding", v.outstanding}, {"waiting", v.waiting}, {"kv", v.kv_usage}, {"backends", v.replicas}});
    }
  }

  // Batch goes first, critical never. Over its class's threshold a request waits in the
  // admission queue (VTC order between tenants, at most queue_timeout_ms), then is shed.
  // True: admitted now; false: queued or shed (the call goes on from there).
  bool admit(double cap, double load) {
    const auto& cfg = gw->cfg();
    if (s.priority == 0) return true;
    const double frac = cap > 0 ? (load + gw->letting_in(s.model)) / cap : 1;
    const double at = gw->control().shed_at(s.priority, s.priority == 2 ? cfg.batch_shed_at : cfg.interactive_shed_at);
    if (frac < at) return true;
    auto self = shared_from_this();
    const bool queued = gw->enqueue(s.model, s.priority, s.tenant, s.prompt_tokens, ticket, [self] {
      net::post(self->strand, [self] { self->let_in(); });
    });
    if (queued) {
      waiting = true;
      why = fmt::format("queued at load {:.2f} of capacity", frac);
      wait_timer.expires_after(std::chrono::milliseconds(cfg.queue_timeout_ms));
      wait_timer.async_wait([self](const beast::error_code& ec) {
        if (ec || !self->waiting || self->finished) return;
        if (!self->gw->cancel_wait(self->s.model, self->s.priority, self->ticket)) return;  // let in meanwhile
        self->waiting = false;
        self->shed(fmt::format("shed: waited {} ms for a slot", self->gw->cfg().queue_timeout_ms));
      });
      return false;
    }
    shed(fmt::format("shed: load {:.2f} of capacity, queue full", frac));
    return false;
  }

  void let_in() {
    gw->dispatched(s.model);
    if (!waiting || finished) return;
    waiting = false;
    wait_timer.cancel();
    admitted = true;
    queued_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    why = fmt::format("let in after {:.0f} ms in the queue", queued_ms);
    if (pick()) connect();
  }

  void shed(const std::string& reason) {
    why = reason;
    if (!finish_once()) return;
    gw->settle_tokens(s, 0, 0, 0);  // a shed request uses none of its tenant's tokens
    gw->count(-1, s.priority, kShed);
    const double at =
        gw->control().shed_at(s.priority, s.priority == 2 ? gw->cfg().batch_shed_at : gw->cfg().interactive_shed_at);
    auto h = s.headers;
    h.emplace_back("Retry-After", "1");
    send_error(*reply, 429, "rate_limit_exceeded",
               fmt::format("overloaded: {} requests are shed at {:.0f}% of capacity", kClassNames[s.priority], 100 * at), "",
               "rate_limit_exceeded", std::move(h));
    log(429, "shed");
  }

  // Picks a site by the policy, then the least-loaded backend in it; false when none is left
  // (the call has answered). One lock from reading the load to counting itself in flight.
  bool pick() {
    std::lock_guard<std::mutex> lock(gw->pick_mutex());
    const auto snap = gw->snapshot();
    std::vector<control::SiteView> views;
    std::vector<int> view_site;
    double cap = 0, load = 0;
    build_views(*snap, views, view_site, cap, load);
    if (views.empty()) return no_candidates();
    if (!admit_once(cap, load)) return false;
    const auto k = route_site(views);
    if (!k) return false;
    site = view_site[*k];
    choose_backend(*snap);
    return true;
  }

  bool no_candidates() {
    if (attempts > 0)
      fail(last_status, last_status == 504 ? "gateway_timeout" : "bad_gateway",
           fmt::format("upstream failed after {} attempt{}: {}", attempts, attempts > 1 ? "s" : "", last_cause),
           last_status == 504 ? "upstream_timeout" : "upstream_error");
    else fail(503, "service_unavailable", fmt::format("no healthy backend serves '{}'{}", s.model, gw->why_unusable(s.model)),
              "no_backend");
    return false;
  }

  // The first pick admits (or queues, or sheds); retries are already in.
  bool admit_once(double cap, double load) {
    if (attempts > 0 || admitted) return true;
    if (!admit(cap, load)) return false;
    admitted = true;
    gw->vtc_charge(s.priority, s.tenant, s.prompt_tokens);  // VTC: input tokens weigh 1, once admitted
    return true;
  }

  // The site policy over the views, with the request as the twin gives it (number, prompt,
  // class, session); nothing when it rejects, answered 503 as the twin rejects.
  std::optional<std::size_t> route_site(const std::vector<control::SiteView>& views) {
    std::vector<double> scores;
    if (request_number == 0) request_number = gw->next_request_number();
    const control::GeoRequest gr{request_number, s.prompt_tokens, s.priority, s.session};
    const auto k = gw->route(gr, views, scores, score_name);
    if (!k) {
      fail(503, "service_unavailable", fmt::format("the {} policy rejected the request", gw->cfg().policy), "router_rejected");
      return std::nullopt;
    }
    for (std::size_t i = 0; i < scores.size() && i < candidates.size(); ++i) candidates[i]["score"] = std::round(scores[i] * 1000) / 1000;
    why = fmt::format("{}{}: rtt {:.1f} ms, {} outstanding on {} backends, kv {:.2f}", why.empty() ? "" : why + "; ",
                      gw->cfg().policy, views[*k].rtt_ms, views[*k].outstanding, views[*k].replicas, views[*k].kv_usage);
    return k;
  }

  // The site's balancer (shared with the twin): the least (own in-flight + scraped waiting).
  void choose_backend(const Snapshot& snap) {
    backend = *control::least_loaded(
        gw->backends(), [&](std::size_t i) { return gw->site_of(i) == site && usable(i); },
        [&](std::size_t i) { return gw->live(i).inflight.load() + snap.backends[i].waiting; });
    gw->session_ran(s.session, site, s.prompt_tokens);
    gw->control().routed(site, s.model);
    tried.push_back(backend);
    ++attempts;
    gw->live(backend).inflight.fetch_add(1);
    counted_inflight = true;
  }

  // ---- the upstream exchange ----

  void connect() {
    auto self = shared_from_this();
    const std::uint64_t g = ++gen;
    got_header = false;
    buf.clear();
    up = std::make_shared<Upstream>(strand, gw->backend(backend), gw->tls(backend));
    up->connect(gw->cfg().connect_timeout_ms, [self, g](beast::error_code ec, const char* stage) {
      if (g != self->gen || self->finished) return;
      if (ec) return self->upstream_failed(fmt::format("{}: {}", stage, ec.message()), ec == beast::error::timeout);
      self->send_upstream(g);
    });
  }

  void send_upstream(std::uint64_t g) {
    auto self = shared_from_this();
    const auto& b = gw->backend(backend);
    ureq = {beast::http::verb::post, s.path, 11};
    ureq.set(beast::http::field::host, fmt::format("{}:{}", b.host, b.port));
    ureq.set(beast::http::field::content_type, "application/json");
    if (!b.api_key.empty()) ureq.set(beast::http::field::authorization, "Bearer " + b.api_key);
    ureq.set("x-infergrid-priority", kClassNames[s.priority]);
    ureq.set("x-request-id", s.id);
    ureq.keep_alive(false);
    ureq.body() = s.body;
    ureq.prepare_payload();
    up->tcp().expires_after(std::chrono::milliseconds(gw->cfg().first_byte_timeout_ms));
    up->visit([&](auto& st) {
      beast::http::async_write(st, ureq, [self, g](beast::error_code ec, std::size_t) {
        if (g != self->gen || self->finished) return;
        if (ec) return self->upstream_failed("write: " + ec.message(), ec == beast::error::timeout);
        self->parser.emplace();
        self->progress_seen = self->gw->snapshot()->backends[self->backend].progress;
        self->arm_stall(g);
        self->up->visit([&](auto& st2) {
          beast::http::async_read_header(st2, self->buf, *self->parser, [self, g](beast::error_code ec, std::size_t) {
            if (g != self->gen || self->finished) return;
            self->got_header = true;
            self->stall.cancel();
            if (ec) return self->upstream_failed("header: " + ec.message(), ec == beast::error::timeout);
            self->on_header();
          });
        });
      });
    });
  }

  // While no first byte has come: a backend whose counters (tokens or engine steps) have not
  // moved for stall_ms is stalled; it is ejected and the request tried elsewhere (as a per-try
  // timeout would), unless that would eject too many backends.
  void arm_stall(std::uint64_t g) {
    auto self = shared_from_this();
    stall.expires_after(std::chrono::milliseconds(gw->cfg().stall_ms));
    stall.async_wait([self, g](const beast::error_code& ec) {
      if (ec || g != self->gen || self->finished || self->got_header) return;
      const double p = self->gw->snapshot()->backends[self->backend].progress;
      if (p < 0 || p != self->progress_seen || !self->gw->try_eject(self->backend, self->s.model, "stalled")) {
        self->progress_seen = p;
        return self->arm_stall(g);
      }
      ++self->gen;  // this try is abandoned
      self->up->close();
      self->retry(fmt::format("stalled: no first byte in {} ms while the backend made no progress", self->gw->cfg().stall_ms),
                  true);
    });
  }

  void on_header() {
    auto& h = parser->get();
    status = static_cast<int>(h.result_int());
    if (status >= 500) return upstream_failed(fmt::format("status {}", status), false);
    // The backend refusing the gateway's own credentials is the gateway's problem, not the client's.
    if (status == 401 || status == 403)
      return upstream_failed(fmt::format("the backend refused the gateway's credentials (status {})", status), false);
    const std::string type(h[beast::http::field::content_type]);
    const bool sse_type = type.find("text/event-stream") != std::string::npos;
    const bool json_type = type.find("application/json") != std::string::npos;
    const std::string shown = type.empty() ? "no content type" : type.substr(0, 60);
    if (status >= 200 && status < 300) {
      if (s.stream && !sse_type) return upstream_failed("answered " + shown + " to a streamed request", false);
      if (!s.stream && !json_type) return upstream_failed("answered " + shown + ", not JSON", false);
    } else if (!json_type) {
      return upstream_failed(fmt::format("answered status {} with {}", status, shown), false);
    }
    if (s.stream && sse_type && status == 200) {
      parser->body_limit(boost::none);  // a stream is relayed, not held
      auto hs = s.headers;
      hs.emplace_back("x-infergrid-site", gw->cfg().sites[static_cast<std::size_t>(site)].name);
      reply->begin_stream(status, "text/event-stream", std::move(hs));
      started = true;
    } else {
      parser->body_limit(gw->cfg().max_upstream_body_bytes);
    }
    read_body();
  }

  void read_body() {
    auto self = shared_from_this();
    const std::uint64_t g = gen;
    parser->get().body().data = chunk.data();
    parser->get().body().size = chunk.size();
    up->tcp().expires_after(std::chrono::milliseconds(started ? gw->cfg().idle_timeout_ms : gw->cfg().first_byte_timeout_ms));
    up->visit([&](auto& st) {
      beast::http::async_read(st, buf, *parser, [self, g](beast::error_code ec, std::size_t) {
        if (g != self->gen || self->finished) return;
        const std::size_t n = self->chunk.size() - self->parser->get().body().size;
        if (ec == beast::http::error::need_buffer) ec = {};
        if (n > 0 && !self->on_data(std::string_view(self->chunk.data(), n))) return;
        if (ec == beast::http::error::body_limit) {
          self->gw->record_failure(self->backend);
          return self->fail(502, "bad_gateway",
                            fmt::format("the backend's answer is larger than {} bytes", self->gw->cfg().max_upstream_body_bytes),
                            "upstream_too_large");
        }
        if (ec) {
          if (self->started) return self->midstream_failed(ec.message());
          return self->upstream_failed("body: " + ec.message(), ec == beast::error::timeout);
        }
        if (self->parser->is_done()) return self->done();
        // Backpressure: a client that reads slowly pauses the upstream read.
        if (self->reply->queued_bytes() > self->gw->cfg().relay_buffer_bytes) {
          self->reply->on_drain(self->gw->cfg().relay_buffer_bytes / 2, [self, g] {
            net::post(self->strand, [self, g] {
              if (g == self->gen && !self->finished) self->read_body();
            });
          });
          return;
        }
        self->read_body();
      });
    });
  }

  // Bytes of the answer; false when the call has ended on them.
  bool on_data(std::string_view data) {
    if (ttft_ms < 0) {
      ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      gw->observe_ttft(s.priority, ttft_ms / 1000);
    }
    if (!started) {
      whole.append(data);
      return true;
    }
    std::string out;
    const bool ok = sse.feed(data, out);
    if (!out.empty()) reply->write(std::move(out));
    const std::int64_t completion = sse.completion_tokens();
    if (completion > vtc_tokens) {
      gw->vtc_charge(s.priority, s.tenant, 2.0 * static_cast<double>(completion - vtc_tokens));  // VTC: output weighs 2
      vtc_tokens = completion;
    }
    // Tokens past the reservation count against the tenant as they stream.
    while (completion - s.reserved_output - charged_output >= kChargeBatch) {
      gw->charge_tokens(s, kChargeBatch);
      charged_output += kChargeBatch;
    }
    if (!ok) {
      midstream_failed(sse.error());
      return false;
    }
    return true;
  }

  void done() {
    if (started) {
      if (!sse.done() || sse.pending()) return midstream_failed("the stream ended without [DONE]");
      if (!finish_once()) return;
      gw->record_success(backend);
      reply->end();
      settle(sse.usage_prompt_tokens(), sse.completion_tokens());
      gw->count(site, s.priority, kOk);
      return log(status, "ok");
    }
    const json j = json::parse(whole, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return upstream_failed("answered a body that is not a JSON object", false);
    std::int64_t prompt = -1, completion = 0;
    if (const auto u = j.find("usage"); u != j.end() && u->is_object()) {
      if (u->contains("prompt_tokens") && (*u)["prompt_tokens"].is_number_integer()) prompt = (*u)["prompt_tokens"].get<std::int64_t>();
      if (u->contains("completion_tokens") && (*u)["completion_tokens"].is_number_integer())
        completion = (*u)["completion_tokens"].get<std::int64_t>();
    }
    if (!finish_once()) return;
    gw->record_success(backend);
    auto hs = s.headers;
    hs.emplace_back("x-infergrid-site", gw->cfg().sites[static_cast<std::size_t>(site)].name);
    reply->send(status, "application/json", std::move(whole), std::move(hs));
    gw->vtc_charge(s.priority, s.tenant, 2.0 * static_cast<double>(completion));
    settle(prompt, completion);
    gw->count(site, s.priority, status < 400 ? kOk : kError);
    log(status, status < 400 ? "ok" : "upstream_error");
  }

  void settle(std::int64_t prompt, std::int64_t completion) {
    gw->settle_tokens(s, prompt >= 0 ? prompt : s.prompt_tokens, completion, charged_output);
  }

  // ---- endings ----

  // Ends the call once: the try's upstream closed, its in-flight count and VTC activity released.
  bool finish_once() {
    if (finished) return false;
    finished = true;
    if (waiting) {  // left while queued
      waiting = false;
      gw->cancel_wait(s.model, s.priority, ticket);
      wait_timer.cancel();
    }
    stall.cancel();
    if (up) up->close();
    release();
    gw->vtc_end(s.priority, s.tenant);
    return true;
  }

  void release() {
    if (!counted_inflight) return;
    gw->live(backend).inflight.fetch_sub(1);
    counted_inflight = false;
    gw->dispatch(s.model);  // a slot is free: a waiting request may take it
  }

  // A try failed before anything reached the client: the backend is charged, the next tried.
  void upstream_failed(const std::string& what, bool timeout) {
    up->close();
    gw->record_failure(backend);
    retry(what, timeout);
  }

  void retry(const std::string& what, bool timeout) {
    release();
    last_cause = what;
    last_status = timeout ? 504 : 502;
    if (reply->gone()) return client_left();
    if (attempts <= gw->cfg().retries) {
      why += "; retry after " + what;
      if (pick()) connect();
      return;
    }
    fail(last_status, timeout ? "gateway_timeout" : "bad_gateway",
         fmt::format("upstream failed after {} attempt{}: {}", attempts, attempts > 1 ? "s" : "", what),
         timeout ? "upstream_timeout" : "upstream_error");
  }

  void midstream_failed(const std::string& what) {
    if (!finish_once()) return;
    gw->record_failure(backend);
    // Only whole events were relayed, so the error event starts on an event boundary.
    reply->write(sse_error({502, "bad_gateway", "the backend failed mid-stream: " + what, "", "upstream_error"}));
    reply->write(std::string(kSseDone));
    reply->end();
    settle(sse.usage_prompt_tokens(), sse.completion_tokens());
    gw->count(site, s.priority, kMidstream);
    log(502, "failed_midstream: " + what);
  }

  // The client went away: the upstream is aborted at once (the backend frees the request's slot);
  // the backend is not charged for it.
  void client_left() {
    if (!finish_once()) return;
    settle(sse.usage_prompt_tokens(), sse.completion_tokens());
    gw->count(site, s.priority, kClientGone);
    log(499, "client_gone");
  }

  void fail(int st, const std::string& type, const std::string& msg, const std::string& code) {
    if (!finish_once()) return;
    send_error(*reply, st, type, msg, "", code, s.headers);
    settle(s.prompt_tokens, 0);
    gw->count(site, s.priority, kError);
    log(st, "error: " + msg);
  }

  void log(int st, const std::string& outcome) {
    if (!gw->log().enabled()) return;
    json j;
    j["id"] = s.id;
    j["client_addr"] = reply->peer();
    j["tenant"] = s.tenant >= 0 ? json(gw->tenant_name(s.tenant)) : json(nullptr);
    j["claimed"] = kClassNames[s.claimed];
    j["priority"] = kClassNames[s.priority];
    j["model"] = s.model;
    j["client"] = {s.client.lat, s.client.lon};
    j["policy"] = gw->cfg().policy;
    j["candidates"] = candidates;
    j["score"] = score_name;
    j["site"] = site >= 0 ? json(gw->cfg().sites[static_cast<std::size_t>(site)].name) : json(nullptr);
    j["backend"] = site >= 0 ? json(gw->backend(backend).url) : json(nullptr);
    j["why"] = why;
    j["attempts"] = attempts;
    j["queued_ms"] = queued_ms;
    j["ttft_ms"] = ttft_ms;
    j["events"] = sse.events();
    j["completion_tokens"] = started ? sse.completion_tokens() : 0;
    j["status"] = st;
    j["outcome"] = outcome;
    j["ms"] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    gw->log().write(j.dump(-1, ' ', false, json::error_handler_t::replace));
  }
};

}  // namespace

void start_call(const std::shared_ptr<Gateway>& gw, std::shared_ptr<Reply> reply, CallSpec spec) {
  std::make_shared<Call>(gw, std::move(reply), std::move(spec))->start();
}

}  // namespace infergrid::serve
