// libFuzzer target for the RESP2 request parser and the reply scanner.
// Invariants checked on every input: no crash, no read past the input, the
// parser's buffer never exceeds its bound, every parsed argument fits the
// limits, and feeding the same bytes in random-size pieces yields exactly the
// same commands as feeding them at once (incremental parsing is exact).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kv/resp.h"
#include "runtime/base/assert.h"

namespace {

using Commands = std::vector<std::vector<std::string>>;

// Parses everything; returns the commands and whether the parser failed.
bool parse_all(const nori::kv::ParserLimits& lim, std::string_view data, size_t piece,
               Commands& out) {
  nori::kv::RequestParser p(lim);
  std::vector<std::string> argv;
  size_t off = 0;
  while (off < data.size()) {
    const size_t n = std::min(piece, data.size() - off);
    if (!p.feed(data.substr(off, n)).ok()) return false;
    off += n;
    NORI_ASSERT(p.buffered_bytes() <= lim.request_bytes_max + lim.line_bytes_max,
                "buffer over bound");
    while (true) {
      auto r = p.next(argv);
      if (!r.ok()) return false;
      if (!*r) break;
      NORI_ASSERT(argv.size() <= lim.args_max, "too many args");
      for (const auto& a : argv)
        NORI_ASSERT(a.size() <= lim.bulk_bytes_max, "arg over bound");
      out.push_back(argv);
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  nori::kv::ParserLimits lim;
  lim.bulk_bytes_max = 512;
  lim.args_max = 64;
  lim.request_bytes_max = 2048;
  lim.line_bytes_max = 128;
  lim.depth_max = 4;
  Commands whole, pieces;
  const bool ok_whole = parse_all(lim, in, in.size() + 1, whole);
  const size_t piece = size == 0 ? 1 : 1 + data[0] % 7;
  const bool ok_pieces = parse_all(lim, in, piece, pieces);
  if (ok_whole && ok_pieces) {
    NORI_ASSERT(whole == pieces, "incremental parse differs from whole parse");
  }
  auto r = nori::kv::scan_reply(in, lim);
  if (r.ok()) NORI_ASSERT(*r <= in.size(), "scan past the end");
  return 0;
}
