#include "tests/lincheck/history.h"

#include <fmt/format.h>

#include <fstream>
#include <istream>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>

namespace nori::lincheck {

using base::ErrorKind;
using nlohmann::json;

std::string_view to_string(OpKind kind) {
  switch (kind) {
    case OpKind::kGet:
      return "get";
    case OpKind::kPut:
      return "put";
    case OpKind::kAppend:
      return "append";
  }
  return "?";
}

std::string_view to_string(OpStatus status) {
  switch (status) {
    case OpStatus::kOk:
      return "ok";
    case OpStatus::kFail:
      return "fail";
    case OpStatus::kInfo:
      return "info";
  }
  return "?";
}

namespace {

base::Error bad(uint64_t line, std::string_view what) {
  return base::Error(ErrorKind::kInvalidArgument, fmt::format("line {}: {}", line, what));
}

// Reads a required integer field; JSON numbers beyond int64 are refused.
base::Result<int64_t> int_field(const json& j, const char* name, uint64_t line) {
  auto it = j.find(name);
  if (it == j.end()) return bad(line, fmt::format("missing field \"{}\"", name));
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return bad(line, fmt::format("field \"{}\" out of range", name));
    }
    return static_cast<int64_t>(v);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return bad(line, fmt::format("field \"{}\" is not an integer", name));
}

// Reads a string field; `required` false returns "" when absent.
base::Result<std::string> string_field(const json& j, const char* name, bool required,
                                       uint64_t line) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (required) return bad(line, fmt::format("missing field \"{}\"", name));
    return std::string();
  }
  if (!it->is_string()) return bad(line, fmt::format("field \"{}\" is not a string", name));
  return it->get<std::string>();
}

}  // namespace

base::Result<Operation> parse_operation(std::string_view text, uint64_t line) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad(line, "not valid JSON");
  if (!j.is_object()) return bad(line, "not a JSON object");

  Operation op;
  op.line = line;
  NORI_ASSIGN_OR_RETURN(int64_t client, int_field(j, "client", line));
  if (client < 0) return bad(line, "negative client id");
  op.client = static_cast<uint64_t>(client);

  NORI_ASSIGN_OR_RETURN(std::string kind, string_field(j, "op", true, line));
  if (kind == "get") {
    op.kind = OpKind::kGet;
  } else if (kind == "put") {
    op.kind = OpKind::kPut;
  } else if (kind == "append") {
    op.kind = OpKind::kAppend;
  } else {
    return bad(line, fmt::format("unknown op \"{}\"", kind));
  }

  NORI_ASSIGN_OR_RETURN(std::string status, string_field(j, "status", true, line));
  if (status == "ok") {
    op.status = OpStatus::kOk;
  } else if (status == "fail") {
    op.status = OpStatus::kFail;
  } else if (status == "info") {
    op.status = OpStatus::kInfo;
  } else {
    return bad(line, fmt::format("unknown status \"{}\"", status));
  }

  NORI_ASSIGN_OR_RETURN(op.key, string_field(j, "key", true, line));
  NORI_ASSIGN_OR_RETURN(op.call_ns, int_field(j, "call", line));
  // An info operation's return only says when the client gave up; it may be
  // absent. Every other operation needs it.
  if (op.status == OpStatus::kInfo && !j.contains("return")) {
    op.return_ns = op.call_ns;
  } else {
    NORI_ASSIGN_OR_RETURN(op.return_ns, int_field(j, "return", line));
    if (op.return_ns < op.call_ns) {
      return bad(line, fmt::format("return {} before call {}", op.return_ns, op.call_ns));
    }
  }

  // Only what the checker uses is required: the argument of a put or append
  // that may have taken effect, the output of a get that succeeded.
  const bool effective = op.status != OpStatus::kFail;
  if (op.kind == OpKind::kGet) {
    NORI_ASSIGN_OR_RETURN(op.output, string_field(j, "output", op.status == OpStatus::kOk, line));
  } else {
    NORI_ASSIGN_OR_RETURN(op.value, string_field(j, "value", effective, line));
  }
  return op;
}

base::Result<History> parse_history(std::istream& in) {
  History history;
  std::string text;
  uint64_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    NORI_ASSIGN_OR_RETURN(Operation op, parse_operation(text, line));
    history.push_back(std::move(op));
  }
  if (in.bad()) return bad(line, "read error");
  return history;
}

base::Result<History> read_history_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return base::err(ErrorKind::kNotFound, "cannot open {}", path);
  auto r = parse_history(in);
  if (!r) return base::err(r.error().kind(), "{}: {}", path, r.error().message());
  return r;
}

std::string to_json_line(const Operation& op) {
  json j = json::object();
  j["client"] = op.client;
  j["op"] = std::string(to_string(op.kind));
  j["key"] = op.key;
  if (op.kind == OpKind::kGet) {
    if (op.status == OpStatus::kOk) j["output"] = op.output;
  } else {
    j["value"] = op.value;
  }
  j["call"] = op.call_ns;
  j["return"] = op.return_ns;
  j["status"] = std::string(to_string(op.status));
  return j.dump();
}

void write_history(std::ostream& out, const History& history) {
  for (const Operation& op : history)
    out << to_json_line(op) << '\n';
}

std::string describe(const Operation& op) {
  std::string what;
  if (op.kind == OpKind::kGet) {
    what = op.status == OpStatus::kOk ? fmt::format("get {} -> \"{}\"", op.key, op.output)
                                      : fmt::format("get {}", op.key);
  } else {
    what = fmt::format("{} {} \"{}\"", to_string(op.kind), op.key, op.value);
  }
  std::string where = op.line ? fmt::format("line {}: ", op.line) : std::string();
  std::string ret = op.status == OpStatus::kInfo ? "inf" : fmt::format("{}", op.return_ns);
  return fmt::format("{}client {} {} [{}, {}] {}", where, op.client, what, op.call_ns, ret,
                     to_string(op.status));
}

}  // namespace nori::lincheck
