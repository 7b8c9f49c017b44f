#pragma once
// `infergrid engine`: a model server without a GPU. The twin's replica (vLLM's scheduler, the
// calibrated performance model) runs on the wall clock behind the OpenAI API; tokens stream out
// when the model says the iteration that produced them ends.
#include <cstdint>
#include <string>

namespace infergrid::serve {

struct EngineOptions {
  std::string model = "llama3-8b", gpu = "h100-80gb", catalog_file;
  int tp = 1;
  std::string host = "127.0.0.1";
  unsigned short port = 8000;
  int max_num_seqs = 256;
  int max_num_batched_tokens = 8192;
  std::string served_name;         // the model name clients use (default: --model)
  std::string output_dist = "lognormal:250:1";  // output tokens when max_tokens is absent
  double time_scale = 1.0;         // < 1 runs faster than the model predicts (tests)
  double load_s = 0;               // model seconds loading weights before the port is bound (a cold start)
  std::uint64_t seed = 1;
  // vLLM --max-model-len: prompt + output tokens a request may hold; longer prompts get 400
  // before they are scheduled. 0: the KV cache's capacity, at most 131,072.
  std::int64_t max_model_len = 0;
  std::string api_key;             // vLLM --api-key: /v1/* needs Authorization: Bearer KEY
  std::string tls_cert, tls_key;   // serve HTTPS with this certificate chain and key (PEM)
  // Fault knobs for tests.
  std::int64_t fail_after_tokens = -1;  // drop the connection after this many streamed tokens
  bool refuse = false;                  // answer every inference request with 503
  double add_latency_ms = 0;            // before the first byte of every answer (a WAN, say)
};

// Serves until SIGINT/SIGTERM. Prints "listening on HOST:PORT" on stdout once bound.
int run_engine(const EngineOptions& o);

}  // namespace infergrid::serve
