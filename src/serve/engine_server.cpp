#include "serve/engine_server.hpp"

#include <signal.h>
#include <cmath>

#include <fmt/format.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "engine/replica.hpp"
#include "model/catalog.hpp"
#include "model/perf_model.hpp"
#include "serve/http_server.hpp"
#include "serve/openai.hpp"
#include "serve/prometheus.hpp"
#include "workload/generator.hpp"

namespace infergrid::serve {

namespace net = boost::asio;
using core::Ns;
using Clock = std::chrono::steady_clock;

namespace {

// vLLM's bucket bounds (seconds).
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                          0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5};
const std::vector<double> kE2eBuckets = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0};

class Engine {
 public:
  Engine(net::io_context& ioc, const EngineOptions& o)
      : ioc_(ioc), o_(o), timer_(ioc), rng_(o.seed, "engine-output"), start_(Clock::now()) {
    auto catalog = model::Catalog::builtin();
    if (!o.catalog_file.empty()) catalog.load_yaml(o.catalog_file);
    auto pm = std::make_shared<model::PerfModel>(catalog.llm(o.model), catalog.accelerator(o.gpu), o.tp);
    engine::EngineConfig cfg;
    cfg.max_num_seqs = o.max_num_seqs;
    cfg.max_num_batched_tokens = o.max_num_batched_tokens;
    cfg.priority_scheduling = true;  // vLLM --scheduling-policy priority: critical first
    cfg.fast_forward = false;        // one event per iteration: tokens stream as they are made
    cfg.validate();
    const auto kv = static_cast<std::int64_t>(pm->kv_capacity_tokens(cfg.gpu_memory_utilization));
    replica_.emplace(0, pm, cfg, kv);
    if (o.max_model_len < 0) core::fail_flag("max-model-len", "must be positive");
    max_model_len_ = o.max_model_len > 0 ? o.max_model_len : std::min<std::int64_t>(kv, 131072);
    if (max_model_len_ > kv)
      core::fail_flag("max-model-len", fmt::format("{} tokens do not fit in the KV cache ({} tokens)", max_model_len_, kv));
    output_ = workload::LengthDist::parse(o.output_dist, "output-dist");
    served_ = o.served_name.empty() ? o.model : o.served_name;
    labels_ = fmt::format("model_name=\"{}\"", served_);
    if (!(o.time_scale > 0)) core::fail_flag("time-scale", "must be positive");
  }

  void handle(Request&& req, std::shared_ptr<Reply> reply) {
    const bool admin = req.target() == "/admin/schedule";
    if (!o_.api_key.empty() && (req.target().substr(0, 4) == "/v1/" || admin)) {
      const auto h = req.find(http::field::authorization);
      if (h == req.end() || h->value() != "Bearer " + o_.api_key)
        return send_error(*reply, 401, "invalid_request_error", "Unauthorized: a valid API key is required", "", "invalid_api_key");
    }
    if (admin) return set_schedule(req, *reply);
    ApiRequest ar;
    if (!openai_front(req, *reply, o_.refuse ? 503 : 200, [this] { return metrics(); }, {served_}, ar)) return;
    if (o_.refuse) return send_error(*reply, 503, "service_unavailable", "the engine refuses requests (fault knob)");
    if (ar.n != 1)
      return send_error(*reply, 400, "invalid_request_error", "the engine emulator generates one choice per request (n = 1)", "n");
    // As vLLM: a prompt that cannot fit, with the output asked for, is refused before scheduling.
    const std::int64_t want = ar.prompt_tokens + std::max<std::int64_t>(ar.max_tokens, 0);
    if (ar.prompt_tokens >= max_model_len_ || want > max_model_len_)
      return send_error(*reply, 400, "invalid_request_error",
                        fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens "
                                    "({} in the messages, {} in the completion). Please reduce the length of the "
                                    "messages or completion.",
                                    max_model_len_, want, ar.prompt_tokens, std::max<std::int32_t>(ar.max_tokens, 0)),
                        "messages", "context_length_exceeded");
    if (o_.add_latency_ms > 0) {
      auto t = std::make_shared<net::steady_timer>(ioc_, std::chrono::microseconds(static_cast<std::int64_t>(o_.add_latency_ms * 1000)));
      t->async_wait([this, t, ar, reply](const boost::system::error_code&) { admit(ar, reply); });
      return;
    }
    admit(ar, reply);
  }

 private:
  // POST /admin/schedule {"step_target_s": s, "prefill_reserve": f, "priority": b}: the scheduler's
  // settings a controller sets (control::Decisions::Schedule), on the running engine; each field
  // optional, what is left out stays. Answers the settings now in force.
  void set_schedule(const Request& req, Reply& reply) {
    if (req.method() != http::verb::post)
      return send_error(reply, 405, "invalid_request_error", "POST /admin/schedule with a JSON body");
    if (auto e = parse_schedule(req.body(), sched_)) return send_error(reply, e->status, e->type, e->message, e->param, e->code);
    replica_->set_schedule(sched_.step_target_s, sched_.prefill_reserve, sched_.priority, std::max(now_ns(), last_event_));
    schedule();
    reply.send(200, "application/json",
               nlohmann::json{{"step_target_s", sched_.step_target_s}, {"prefill_reserve", sched_.prefill_reserve},
                              {"priority", sched_.priority}}
                   .dump());
  }

  struct Live {
    std::shared_ptr<Reply> reply;
    ApiRequest req;
    std::string id;
    std::int64_t created = 0;
    std::int32_t sent = 0, total = 0;
    Clock::time_point arrived, last_token;
    bool first_sent = false, dead = false;
  };

  Ns now_ns() const {
    return static_cast<Ns>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_).count() /
                           o_.time_scale);
  }
  Clock::time_point wall(Ns t) const {
    return start_ + std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<double>(t) * o_.time_scale));
  }
  static std::int64_t created_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  void admit(const ApiRequest& ar, const std::shared_ptr<Reply>& reply) {
    const std::uint64_t id = next_id_++;
    Live lv;
    lv.reply = reply;
    lv.req = ar;
    lv.id = fmt::format("{}-{}", ar.endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl", id);
    lv.created = created_s();
    lv.total = ar.max_tokens > 0 ? ar.max_tokens
                                 : static_cast<std::int32_t>(std::min<std::int64_t>(
                                       std::max(1, output_.sample(rng_)), max_model_len_ - ar.prompt_tokens));
    lv.arrived = Clock::now();
    workload::Request r;
    r.id = id;
    r.prompt_tokens = ar.prompt_tokens;
    r.output_tokens = lv.total;
    r.priority = static_cast<workload::Priority>(ar.priority);
    Ns now = std::max(now_ns(), last_event_);
    r.arrival = now;
    prompt_tokens_total_ += static_cast<double>(ar.prompt_tokens);
    if (ar.stream) reply->begin_stream(200, "text/event-stream");
    live_.emplace(id, std::move(lv));
    replica_->enqueue(std::move(r), now);
    // The client going away aborts the request (vLLM does the same): its slot and KV blocks are
    // freed at the end of the iteration in progress.
    reply->on_close([this, id] { net::post(ioc_, [this, id] { abandon(id); }); });
    schedule();
  }

  void abandon(std::uint64_t id) {
    auto it = live_.find(id);
    if (it == live_.end()) return;
    live_.erase(it);
    ++aborted_total_;
    replica_->abort(id, std::max(now_ns(), last_event_));
    schedule();
  }

  void schedule() {
    const Ns t = replica_->next_event_time();
    if (t == core::kNever) {
      timer_.cancel();
      armed_ = core::kNever;
      return;
    }
    if (t == armed_) return;
    armed_ = t;
    timer_.expires_at(wall(t));
    timer_.async_wait([this, t](const boost::system::error_code& ec) {
      if (ec || t != armed_) return;
      armed_ = core::kNever;
      last_event_ = t;
      replica_->advance(t);
      const double before = generation_tokens_total_;
      emit();
      iteration_tokens_.observe(generation_tokens_total_ - before);
      schedule();
    });
  }

  void emit() {
    replica_->running_progress(progress_);
    for (const auto& [id, gen] : progress_) {
      auto it = live_.find(id);
      if (it != live_.end()) send_tokens(it->second, gen);
    }
    for (const auto& c : replica_->completions()) {
      auto it = live_.find(c.id);
      if (it == live_.end()) continue;
      finish(it->second, c);
      live_.erase(it);
    }
    replica_->completions().clear();
  }

  void send_tokens(Live& lv, std::int32_t upto) {
    if (lv.dead || upto <= lv.sent) return;
    const auto now = Clock::now();
    if (!lv.first_sent) ttft_.observe(std::chrono::duration<double>(now - lv.arrived).count());
    else itl_.observe(std::chrono::duration<double>(now - lv.last_token).count() / (upto - lv.sent));
    lv.last_token = now;
    generation_tokens_total_ += upto - lv.sent;
    if (!lv.req.stream) {
      lv.first_sent = true;
      lv.sent = upto;
      return;
    }
    std::string out;
    for (std::int32_t i = lv.sent; i < upto; ++i) {
      out += sse_chunk(lv.req.endpoint, lv.id, served_, lv.created, filler_token(i), nullptr, !lv.first_sent);
      lv.first_sent = true;
      if (o_.fail_after_tokens >= 0 && i + 1 >= o_.fail_after_tokens) {
        lv.reply->write(std::move(out));
        lv.reply->abort();
        lv.dead = true;
        return;
      }
    }
    lv.sent = upto;
    lv.reply->write(std::move(out));
  }

  void finish(Live& lv, const engine::Completion& c) {
    if (c.rejected) {
      const ApiError e{400, "invalid_request_error",
                       fmt::format("the prompt ({} tokens) does not fit in the KV cache", lv.req.prompt_tokens),
                       "messages", "context_length_exceeded"};
      if (lv.req.stream) {
        lv.reply->write(sse_error(e));
        lv.reply->write(std::string(kSseDone));
        lv.reply->end();
      } else {
        send_error(*lv.reply, e.status, e.type, e.message, e.param, e.code);
      }
      return;
    }
    send_tokens(lv, c.output_tokens);
    if (lv.dead) return;
    e2e_.observe(std::chrono::duration<double>(Clock::now() - lv.arrived).count());
    ++success_total_;
    const char* reason = lv.req.max_tokens > 0 ? "length" : "stop";
    if (lv.req.stream) {
      std::string out = sse_chunk(lv.req.endpoint, lv.id, served_, lv.created, "", reason, false);
      if (lv.req.include_usage) out += sse_usage(lv.req.endpoint, lv.id, served_, lv.created, lv.req.prompt_tokens, c.output_tokens);
      out += kSseDone;
      lv.reply->write(std::move(out));
      lv.reply->end();
    } else {
      std::string text;
      for (std::int32_t i = 0; i < c.output_tokens; ++i) text += filler_token(i);
      lv.reply->send(200, "application/json",
                     full_response(lv.req.endpoint, lv.id, served_, lv.created, text, lv.req.prompt_tokens,
                                   c.output_tokens, reason));
    }
  }

  std::string metrics() const {
    std::string out;
    write_gauge(out, "vllm:num_requests_running", "Number of requests in model execution batches.", labels_, replica_->running());
    write_gauge(out, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels_, replica_->waiting());
    write_gauge(out, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels_, replica_->kv_usage());
    write_gauge(out, "vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", labels_, replica_->kv_usage());
    write_gauge(out, "vllm:prompt_tokens_total", "Number of prefill tokens processed.", labels_, prompt_tokens_total_, "counter");
    write_gauge(out, "vllm:generation_tokens_total", "Number of generation tokens processed.", labels_, generation_tokens_total_, "counter");
    write_gauge(out, "vllm:request_success_total", "Count of successfully processed requests.", labels_, success_total_, "counter");
    write_gauge(out, "infergrid_engine_requests_aborted_total", "Requests aborted because their client went away.", labels_,
                aborted_total_, "counter");
    write_gauge(out, "infergrid_engine_step_target_seconds",
                "The iteration time the scheduler fits prefill within (POST /admin/schedule; 0: the token budget alone).", labels_,
                sched_.step_target_s);
    write_gauge(out, "infergrid_engine_step_prefill_reserve", "Share of the step target kept for prefill.", labels_,
                sched_.prefill_reserve);
    write_gauge(out, "infergrid_engine_priority_scheduling", "1 when the scheduler serves by priority (critical first).", labels_,
                sched_.priority ? 1.0 : 0.0);
    iteration_tokens_.write(out, "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", labels_);
    ttft_.write(out, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels_);
    itl_.write(out, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", labels_);
    itl_.write(out, "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", labels_);
    e2e_.write(out, "vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", labels_);
    return out;
  }

  net::io_context& ioc_;
  EngineOptions o_;
  net::steady_timer timer_;
  core::Rng rng_;
  Clock::time_point start_;
  std::optional<engine::Replica> replica_;
  EngineSchedule sched_;  // the schedule in force (POST /admin/schedule); starts as the engine's config
  workload::LengthDist output_;
  std::string served_, labels_;
  std::unordered_map<std::uint64_t, Live> live_;
  std::vector<std::pair<std::uint64_t, std::int32_t>> progress_;
  std::uint64_t next_id_ = 1;
  Ns armed_ = core::kNever, last_event_ = 0;
  double prompt_tokens_total_ = 0, generation_tokens_total_ = 0, success_total_ = 0, aborted_total_ = 0;
  std::int64_t max_model_len_ = 0;
  Histogram iteration_tokens_{{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}};
  Histogram ttft_{kTtftBuckets}, itl_{kItlBuckets}, e2e_{kE2eBuckets};
};

}  // namespace

int run_engine(const EngineOptions& o) {
  net::io_context ioc(1);
  Engine engine(ioc, o);
  if (o.load_s > 0) {
    // Weights loading, as vLLM: its API server binds the port only once the engine is up, so a
    // scraper sees connection refused until then. SIGTERM during the load ends it.
    std::fprintf(stderr, "engine: loading weights (%.3f s)\n", o.load_s * o.time_scale);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    const double wait_s = o.load_s * o.time_scale;
    timespec ts{static_cast<time_t>(wait_s), static_cast<long>((wait_s - std::floor(wait_s)) * 1e9)};
    const int sig = sigtimedwait(&set, nullptr, &ts);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (sig == SIGTERM || sig == SIGINT) return 0;
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) core::fail_flag("ssl-certfile", "--ssl-certfile and --ssl-keyfile go together");
  HttpServer server(ioc, o.host, o.port, [&](Request&& r, std::shared_ptr<Reply> rep) { engine.handle(std::move(r), std::move(rep)); },
                    ServerLimits{}, TlsFiles{o.tls_cert, o.tls_key});
  server.start();
  std::printf("listening on %s:%u\n", o.host.c_str(), server.port());
  std::fflush(stdout);
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { ioc.stop(); });
  run_guarded(ioc, "engine");
  return 0;
}

}  // namespace infergrid::serve
