// libFuzzer target: arbitrary bytes into the frame reader and body decoder.
// Byte 0 picks the mode: raw stream (checksums will mostly fail early), or a
// frame whose header and checksum are fixed up around the fuzzed body, so the
// message and heartbeat decoders see arbitrary bodies; byte 1 picks the
// receive chunk size, so frame assembly across reads is exercised too.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "net/frame.h"
#include "net/heartbeat.h"
#include "runtime/base/assert.h"

using namespace nori::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint8_t mode = data[0];
  size_t chunk = 1 + data[1] * 97;
  std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  std::string wire;
  if (mode % 2 == 0) {
    wire.assign(rest);
  } else {
    // count from the body's first two bytes; the body is the rest.
    uint32_t count = rest.size() >= 2 ? (uint8_t(rest[0]) | uint8_t(rest[1]) << 8) : 0;
    std::string_view body = rest.size() >= 2 ? rest.substr(2) : std::string_view();
    wire.resize(kFrameHeaderBytes);
    iovec v{const_cast<char*>(body.data()), body.size()};
    encode_frame_header(reinterpret_cast<uint8_t*>(wire.data()),
                        {static_cast<uint32_t>(body.size()), count}, {&v, 1}, 42);
    wire.append(body);
  }
  FrameReader r(42, 16 * 1024);
  size_t at = 0;
  std::vector<HeartbeatEntry> hb;
  std::vector<HeartbeatReply> hr;
  while (true) {
    FrameReader::Status st;
    while ((st = r.next()) == FrameReader::kFrame) {
      for (const MessageView& m : r.messages()) {
        // A verified frame's heartbeat payloads must decode (they were validated).
        if (m.type == MessageType::kHeartbeats) {
          hb.clear();
          NORI_ASSERT(decode_heartbeats(m.payload, hb));
        } else if (m.type == MessageType::kHeartbeatReplies) {
          hr.clear();
          NORI_ASSERT(decode_heartbeat_replies(m.payload, hr));
        }
      }
    }
    if (st == FrameReader::kError || at == wire.size()) break;
    auto w = r.writable();
    size_t n = std::min({chunk, w.size(), wire.size() - at});
    std::memcpy(w.data(), wire.data() + at, n);
    r.produced(n);
    at += n;
  }
  return 0;
}
