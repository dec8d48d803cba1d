#include "kv/resp.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace nori::kv {

namespace {

base::Error protocol_error(std::string_view what) {
  return base::Error(base::ErrorKind::kProtocol, fmt::format("Protocol error: {}", what));
}

// A RESP integer: optional '-', 1..18 digits, nothing else (no '+', no spaces).
bool parse_int(std::string_view s, int64_t& v) {
  if (s.empty() || s.size() > 19) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size() || s.size() - i > 18) return false;
  for (size_t j = i; j < s.size(); ++j) {
    if (s[j] < '0' || s[j] > '9') return false;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

constexpr std::string_view kCrlf = "\r\n";

}  // namespace

base::Status RequestParser::feed(std::string_view bytes) {
  if (failed_) return protocol_error("connection already failed");
  if (buffered_bytes() + bytes.size() > limits_.request_bytes_max + limits_.line_bytes_max) {
    failed_ = true;
    return protocol_error("too much unparsed input buffered");
  }
  compact();
  buf_.append(bytes);
  return {};
}

void RequestParser::compact() {
  // Move the unconsumed tail to the front once the consumed prefix dominates:
  // amortized O(1) per byte, and the buffer never grows past its bound.
  if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
}

base::Result<size_t> RequestParser::find_line_end(size_t from) const {
  const size_t end = buf_.find(kCrlf, from);
  const size_t limit = limits_.line_bytes_max;
  if (end == std::string::npos) {
    if (buf_.size() - from > limit) return protocol_error("line too long");
    return std::string::npos;
  }
  if (end - from > limit) return protocol_error("line too long");
  return end;
}

base::Result<bool> RequestParser::next(std::vector<std::string>& argv) {
  if (failed_) return protocol_error("connection already failed");
  argv.clear();
  if (pos_ == buf_.size()) return false;
  auto r = (in_command_ || buf_[pos_] == '*') ? next_multibulk(argv) : next_inline(argv);
  if (!r.ok()) failed_ = true;
  return r;
}

base::Result<bool> RequestParser::next_multibulk(std::vector<std::string>& argv) {
  if (!in_command_) {
    NORI_ASSIGN_OR_RETURN(size_t end, find_line_end(pos_));
    if (end == std::string::npos) return false;
    int64_t n = 0;
    if (!parse_int(std::string_view(buf_).substr(pos_ + 1, end - pos_ - 1), n)) {
      return protocol_error("invalid multibulk length");
    }
    if (n < 0 || static_cast<uint64_t>(n) > limits_.args_max) {
      return protocol_error("invalid multibulk length");
    }
    pos_ = end + 2;
    if (n == 0) return true;  // "*0\r\n": an empty command, skipped by the caller
    in_command_ = true;
    args_expected_ = static_cast<size_t>(n);
    declared_bytes_ = 0;
    partial_.clear();
    // One allocation for a usual command instead of one per doubling; the
    // declared count is untrusted, so only a small reserve is taken on faith.
    partial_.reserve(std::min<size_t>(args_expected_, kArgsReserveMax));
  }
  while (partial_.size() < args_expected_) {
    if (pos_ == buf_.size()) return false;
    if (buf_[pos_] != '$') {
      return protocol_error(
          fmt::format("expected '$', got '{}'", buf_[pos_] == '\0' ? '0' : buf_[pos_]));
    }
    auto end_r = find_line_end(pos_);
    if (!end_r) return std::move(end_r).error();
    const size_t end = *end_r;
    if (end == std::string::npos) return false;
    int64_t len = 0;
    if (!parse_int(std::string_view(buf_).substr(pos_ + 1, end - pos_ - 1), len) || len < 0 ||
        static_cast<uint64_t>(len) > limits_.bulk_bytes_max) {
      return protocol_error("invalid bulk length");
    }
    const size_t ulen = static_cast<size_t>(len);
    // Bound the whole command before buffering its payload.
    if (declared_bytes_ + ulen + 2 > limits_.request_bytes_max) {
      return protocol_error("request too large");
    }
    const size_t body = end + 2;
    if (buf_.size() - body < ulen + 2) return false;  // wait: header re-read next time
    if (buf_.compare(body + ulen, 2, kCrlf) != 0)
      return protocol_error("bulk not terminated by CRLF");
    partial_.emplace_back(buf_, body, ulen);
    declared_bytes_ += ulen + 2;
    pos_ = body + ulen + 2;
  }
  in_command_ = false;
  argv.swap(partial_);
  partial_.clear();
  return true;
}

base::Result<bool> RequestParser::next_inline(std::vector<std::string>& argv) {
  auto end_r = find_line_end(pos_);
  if (!end_r) return std::move(end_r).error();
  size_t end = *end_r;
  if (end == std::string::npos) {
    // Accept a bare "\n" terminator as Redis does for telnet users.
    const size_t nl = buf_.find('\n', pos_);
    if (nl == std::string::npos) return false;
    end = nl;
  }
  std::string_view line = std::string_view(buf_).substr(pos_, end - pos_);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t next = (end < buf_.size() && buf_[end] == '\r') ? end + 2 : end + 1;
  // Split on spaces and tabs; quotes are not interpreted (use multibulk).
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
      ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t')
      ++j;
    if (j > i) {
      if (argv.size() >= limits_.args_max) return protocol_error("too many inline arguments");
      argv.emplace_back(line.substr(i, j - i));
    }
    i = j;
  }
  pos_ = next;
  return true;
}

namespace {

// Scans one value starting at `pos`; returns the offset just past it, 0 if
// incomplete.
base::Result<size_t> scan_value(std::string_view buf, size_t pos, const ParserLimits& limits,
                                size_t depth) {
  if (depth > limits.depth_max) return protocol_error("reply nested too deeply");
  if (pos >= buf.size()) return size_t{0};
  const size_t end = buf.find(kCrlf, pos);
  if (end == std::string_view::npos) {
    if (buf.size() - pos > limits.line_bytes_max) return protocol_error("line too long");
    return size_t{0};
  }
  if (end - pos > limits.line_bytes_max) return protocol_error("line too long");
  const char type = buf[pos];
  const std::string_view line = buf.substr(pos + 1, end - pos - 1);
  int64_t n = 0;
  switch (type) {
    case '+':
    case '-':
      return end + 2;
    case ':':
      if (!parse_int(line, n)) return protocol_error("invalid integer");
      return end + 2;
    case '$': {
      if (!parse_int(line, n) || n < -1 ||
          (n >= 0 && static_cast<uint64_t>(n) > limits.bulk_bytes_max)) {
        return protocol_error("invalid bulk length");
      }
      if (n == -1) return end + 2;
      const size_t body = end + 2;
      const size_t len = static_cast<size_t>(n);
      if (buf.size() - body < len + 2) return size_t{0};
      if (buf.substr(body + len, 2) != kCrlf) return protocol_error("bulk not terminated by CRLF");
      return body + len + 2;
    }
    case '*': {
      if (!parse_int(line, n) || n < -1 || (n >= 0 && static_cast<uint64_t>(n) > limits.args_max)) {
        return protocol_error("invalid array length");
      }
      size_t p = end + 2;
      for (int64_t i = 0; i < n; ++i) {
        auto r = scan_value(buf, p, limits, depth + 1);
        if (!r) return r;
        if (*r == 0) return size_t{0};
        p = *r;
      }
      return p;
    }
    default:
      return protocol_error("unknown reply type");
  }
}

}  // namespace

base::Result<size_t> scan_reply(std::string_view buf, const ParserLimits& limits) {
  return scan_value(buf, 0, limits, 0);
}

namespace reply {
void simple(std::string& out, std::string_view s) {
  out += '+';
  out += s;
  out += kCrlf;
}
void error(std::string& out, std::string_view s) {
  out += '-';
  for (char c : s)
    out += (c == '\r' || c == '\n') ? ' ' : c;
  out += kCrlf;
}
void integer(std::string& out, int64_t v) {
  fmt::format_to(std::back_inserter(out), ":{}\r\n", v);
}
void bulk(std::string& out, std::string_view s) {
  fmt::format_to(std::back_inserter(out), "${}\r\n", s.size());
  out += s;
  out += kCrlf;
}
void null_bulk(std::string& out) {
  out += "$-1\r\n";
}
void array_header(std::string& out, size_t n) {
  fmt::format_to(std::back_inserter(out), "*{}\r\n", n);
}
void null_array(std::string& out) {
  out += "*-1\r\n";
}
}  // namespace reply

}  // namespace nori::kv
