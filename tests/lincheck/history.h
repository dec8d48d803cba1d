// Key-value operation histories: the record of what clients asked of a
// replicated key-value store, when, and what they were told.
//
// This is the input of the linearizability checker (checker.h). The on-disk
// form is JSON lines, one finished operation per line, exactly the format of
// ../shared/histories/README.md:
//
//   {"client":0,"op":"put","key":"x","value":"1","call":0,"return":100,"status":"ok"}
//   {"client":1,"op":"get","key":"x","output":"1","call":60,"return":150,"status":"ok"}
//
// `status` says what the client knows about the effect: ok (it took effect, at
// one instant between call and return), fail (it certainly did not), info (the
// outcome is unknown: it may have taken effect at any time after call, so its
// return is treated as infinitely late). Extra fields are ignored.
//
// Parsing is strict about what the checker relies on (a missing or mistyped
// field, an unknown op or status, return before call: each is an
// invalid-argument error naming the line) and lenient about the rest (unknown
// fields, fields a dropped operation does not need).
//
// Not thread-safe; plain values. Off the hot path: nlohmann-json is used.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/result.h"

namespace nori::lincheck {

enum class OpKind : uint8_t { kGet, kPut, kAppend };
enum class OpStatus : uint8_t { kOk, kFail, kInfo };

std::string_view to_string(OpKind kind);
std::string_view to_string(OpStatus status);

struct Operation {
  uint64_t client = 0;
  OpKind kind = OpKind::kGet;
  std::string key;
  std::string value;   // argument of a put or append
  std::string output;  // what an ok get returned ("" for a missing key)
  int64_t call_ns = 0;
  int64_t return_ns = 0;  // for kInfo: when the client gave up; not an upper bound
  OpStatus status = OpStatus::kOk;
  uint64_t line = 0;  // 1-based source line when parsed; 0 when built in memory
};

using History = std::vector<Operation>;

// One JSON object (one line of a history file). `line` is recorded in the
// result and in error messages.
base::Result<Operation> parse_operation(std::string_view json, uint64_t line = 0);

// Every non-blank line of `in`. Fails on the first malformed line.
base::Result<History> parse_history(std::istream& in);
base::Result<History> read_history_file(const std::string& path);

// The JSON-lines form parse_operation reads back (fields a get or a put does
// not have are omitted).
std::string to_json_line(const Operation& op);
void write_history(std::ostream& out, const History& history);

// "line 12: client 3 get k1 -> \"ab\" [100, 250] ok", for diagnostics.
std::string describe(const Operation& op);

}  // namespace nori::lincheck
