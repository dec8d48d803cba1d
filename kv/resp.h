// RESP2 (the Redis serialization protocol, version 2): an incremental,
// bounded request parser for the server and a bounded reply scanner for the
// server's forwarding client and test clients, plus reply writers.
//
// What it is for: norikv's client port. A connection feeds whatever recv()
// returned to RequestParser::feed() and pulls complete commands with next();
// pipelined commands in one read come out one by one, a command split over
// many reads comes out once its last byte arrives.
//
//   RequestParser p(limits);
//   if (auto st = p.feed(bytes); !st.ok()) -> reply -ERR Protocol error, close
//   std::vector<std::string> argv;
//   while (true) {
//     auto r = p.next(argv);                   // Result<bool>
//     if (!r) -> reply "-ERR Protocol error: ..." and close (parser is dead)
//     if (!*r) break;                          // need more bytes
//     execute(argv);
//   }
//
// Bounds (ParserLimits, every one named, units last): a request is either an
// array of bulk strings ("*N\r\n$len\r\n...") or an inline command (one
// line, split on spaces). Nested arrays, integers or simple strings inside a
// request are protocol errors (as in Redis), so request nesting depth is 1 by
// construction. A declared bulk length above bulk_bytes_max, an array above
// args_max, a declared command total above request_bytes_max, a header or
// inline line longer than line_bytes_max: protocol error before any byte of
// the payload is buffered. The parser never reserves memory from a declared
// length; its buffer holds at most request_bytes_max + one read.
//
// ReplyScanner finds where one complete RESP2 reply value ends (for relaying
// a leader's reply verbatim); it bounds nesting depth (depth_max), element
// counts and lengths the same way.
//
// Threading: none; one parser per connection, used by its one coroutine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/result.h"

namespace nori::kv {

struct ParserLimits {
  size_t bulk_bytes_max = size_t{16} << 20;     // one argument
  size_t args_max = 1 << 20;                    // arguments of one command
  size_t request_bytes_max = size_t{64} << 20;  // one command, all arguments and framing
  size_t line_bytes_max = 64 << 10;             // a header line or an inline command
  size_t depth_max = 16;                        // ReplyScanner only: nested arrays
};

class RequestParser {
 public:
  // Arguments reserved up front for a command; a larger declared count grows
  // as its arguments actually arrive (the count itself is untrusted).
  static constexpr size_t kArgsReserveMax = 8;

  explicit RequestParser(ParserLimits limits = {}) : limits_(limits) {}

  // Appends received bytes. Fails (kProtocol) once the buffered, unparsed
  // bytes would exceed request_bytes_max + line_bytes_max: a client that
  // sends more than one maximal command without reading replies is cut off.
  base::Status feed(std::string_view bytes);

  // Parses the next complete command into argv (cleared first). true: argv
  // holds a command (it may be empty for an empty inline line: skip it).
  // false: more bytes needed. Error (kProtocol): malformed; the connection
  // must be closed after replying, the parser stays failed.
  base::Result<bool> next(std::vector<std::string>& argv);

  size_t buffered_bytes() const { return buf_.size() - pos_; }

 private:
  base::Result<bool> next_multibulk(std::vector<std::string>& argv);
  base::Result<bool> next_inline(std::vector<std::string>& argv);
  // Finds "\r\n" from `from`; npos if absent. Fails if the line is too long.
  base::Result<size_t> find_line_end(size_t from) const;
  void compact();

  ParserLimits limits_;
  std::string buf_;
  size_t pos_ = 0;  // first unconsumed byte of buf_
  // Progress through the current multibulk command (kept across next() calls
  // so a large command arriving in many reads is not re-parsed from its start).
  bool in_command_ = false;
  size_t args_expected_ = 0;
  size_t declared_bytes_ = 0;
  std::vector<std::string> partial_;
  bool failed_ = false;
};

// Where one complete reply value ends in `buf` (from offset 0).
// Ok(n > 0): the first n bytes are one value. Ok(0): incomplete. Error:
// malformed or over the limits (kProtocol).
base::Result<size_t> scan_reply(std::string_view buf, const ParserLimits& limits = {});

// Reply writers: append one RESP2 value to `out`.
namespace reply {
void simple(std::string& out, std::string_view s);  // +OK
void error(std::string& out, std::string_view s);   // -ERR ... (no CR/LF inside)
void integer(std::string& out, int64_t v);
void bulk(std::string& out, std::string_view s);
void null_bulk(std::string& out);  // $-1
void array_header(std::string& out, size_t n);
void null_array(std::string& out);  // *-1
inline std::string ok() {
  return "+OK\r\n";
}
}  // namespace reply

}  // namespace nori::kv
