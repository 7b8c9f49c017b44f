#pragma once
// Readers of the public trace formats. Each streams its file line by line (a multi-GB trace
// never sits in memory) and rejects a bad line with its file, line number and field.
#include <memory>
#include <string>

#include "workload/request.hpp"

namespace infergrid::workload {

enum class TraceFormat { kAzure, kAzureMm, kBurstGpt, kMooncake };

// "azure" (Azure LLM 2023/2024), "azure-mm" (Azure multimodal 2025), "burstgpt", "mooncake".
TraceFormat parse_trace_format(const std::string& name);
// Guesses from the file's first line; throws InputError when no format matches.
TraceFormat detect_trace_format(const std::string& path);

std::unique_ptr<RequestSource> open_trace(const std::string& path, TraceFormat format);

// Parses "YYYY-MM-DD HH:MM:SS[.fraction][+HH:MM|Z]" into nanoseconds since the Unix epoch.
bool parse_timestamp(std::string_view s, core::Ns& out);

// Parses one already-split line of the given format into `out` (used by the readers and the
// fuzz targets). Returns an error message naming the field, or empty on success.
std::string parse_mooncake_line(std::string_view line, Request& out, core::Ns& t_ms_out);

}  // namespace infergrid::workload
