#include "net/heartbeat.h"

#include <algorithm>

#include "runtime/base/assert.h"
#include "runtime/base/bytes.h"

namespace nori::net {

namespace {

template <typename T>
void sort_dedupe(std::vector<T>& v) {
  // Stable, so among equal groups the one staged last stays last.
  std::stable_sort(v.begin(), v.end(), [](const T& a, const T& b) { return a.group < b.group; });
  size_t out = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i + 1 < v.size() && v[i + 1].group == v[i].group) continue;
    v[out++] = v[i];
  }
  v.resize(out);
}

// Reads count, then count records of `fields` varints each; calls emit(values)
// per record with group already de-delta'd. Rejects duplicate/unsorted groups,
// counts over the bound, and payloads not exactly filled.
template <size_t kFields, typename Emit>
bool decode_records(std::string_view payload, Emit&& emit) {
  base::ByteReader r(payload);
  uint64_t count;
  if (!r.varint_bounded(count, kHeartbeatEntriesMax)) return false;
  // Each record takes at least kFields bytes: bound the count by what is left
  // before trusting it for anything.
  if (count > r.remaining() / kFields) return false;
  uint64_t group = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t f[kFields];
    for (size_t k = 0; k < kFields; ++k) {
      if (!r.varint(f[k])) return false;
    }
    if (i > 0 && f[0] == 0) return false;         // duplicate group
    if (f[0] > UINT64_MAX - group) return false;  // group id overflow
    group += f[0];
    f[0] = group;
    if (!emit(f)) return false;
  }
  return r.empty();
}

}  // namespace

void sort_dedupe_latest(std::vector<HeartbeatEntry>& entries) {
  sort_dedupe(entries);
}
void sort_dedupe_latest(std::vector<HeartbeatReply>& replies) {
  sort_dedupe(replies);
}

size_t heartbeats_bytes_max(size_t count) {
  return base::kVarintMaxBytes + count * 4 * base::kVarintMaxBytes;
}

void encode_heartbeats(std::span<const HeartbeatEntry> entries, std::string& out) {
  NORI_ASSERT(entries.size() <= kHeartbeatEntriesMax, "{} heartbeat entries", entries.size());
  base::ByteWriter w(out);
  w.varint(entries.size());
  GroupId prev = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const HeartbeatEntry& e = entries[i];
    NORI_ASSERT(i == 0 || e.group > prev, "heartbeat entries not sorted by group");
    w.varint(e.group - prev);
    w.varint(e.term);
    w.varint(e.commit);
    w.varint(e.round);
    prev = e.group;
  }
}

void encode_heartbeat_replies(std::span<const HeartbeatReply> replies, std::string& out) {
  NORI_ASSERT(replies.size() <= kHeartbeatEntriesMax, "{} heartbeat replies", replies.size());
  base::ByteWriter w(out);
  w.varint(replies.size());
  GroupId prev = 0;
  for (size_t i = 0; i < replies.size(); ++i) {
    const HeartbeatReply& e = replies[i];
    NORI_ASSERT(i == 0 || e.group > prev, "heartbeat replies not sorted by group");
    w.varint(e.group - prev);
    w.varint(e.term);
    w.varint(e.round);
    w.varint(e.flags);
    prev = e.group;
  }
}

bool decode_heartbeats(std::string_view payload, std::vector<HeartbeatEntry>& out) {
  return decode_records<4>(payload, [&](const uint64_t* f) {
    out.push_back({f[0], f[1], f[2], f[3]});
    return true;
  });
}

bool decode_heartbeat_replies(std::string_view payload, std::vector<HeartbeatReply>& out) {
  return decode_records<4>(payload, [&](const uint64_t* f) {
    if (f[3] > kHeartbeatReplyFlagsMax) return false;
    out.push_back({f[0], f[1], f[2], static_cast<uint32_t>(f[3])});
    return true;
  });
}

bool validate_heartbeats(std::string_view payload) {
  return decode_records<4>(payload, [](const uint64_t*) { return true; });
}

bool validate_heartbeat_replies(std::string_view payload) {
  return decode_records<4>(payload,
                           [](const uint64_t* f) { return f[3] <= kHeartbeatReplyFlagsMax; });
}

}  // namespace nori::net
