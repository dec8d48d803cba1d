#include "kv/store.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "kv/resp.h"
#include "runtime/base/bytes.h"

namespace nori::kv {

namespace {

constexpr uint8_t kEntryVersion = 1;
constexpr uint8_t kBatchVersion = 2;  // a batch entry's first byte (encode_batch)
constexpr uint8_t kFlagOpensSession = 1;

constexpr uint64_t kSnapshotMagic = 0x31534B49524F4EULL;  // "NORIKS1\0" little-endian
constexpr uint32_t kSnapshotVersion = 1;
constexpr uint8_t kRecordSession = 1;
constexpr uint8_t kRecordKey = 2;
constexpr uint8_t kRecordEnd = 3;

bool parse_i64(std::string_view s, int64_t& v) {
  if (s.empty() || s.size() > 20) return false;
  if (s[0] == '+' || (s.size() > 1 && s[0] == '0') ||
      (s.size() > 2 && s[0] == '-' && s[1] == '0')) {
    return false;  // canonical decimal only, as Redis
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& c : u) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return u;
}

std::string err_reply(std::string_view msg) {
  std::string out;
  reply::error(out, msg);
  return out;
}

base::Error bad_input(std::string msg) {
  return base::Error(base::ErrorKind::kInvalidArgument, std::move(msg));
}

base::Error corrupt(std::string_view what) {
  return base::Error(base::ErrorKind::kCorruption, fmt::format("snapshot: {}", what));
}

constexpr std::string_view kNotInteger = "ERR value is not an integer or out of range";

}  // namespace

std::string encode_write(const WriteHeader& h, const std::vector<std::string>& argv) {
  std::string out;
  base::ByteWriter w(out);
  w.u8(kEntryVersion);
  w.u8(h.opens_session ? kFlagOpensSession : 0);
  w.varint(h.client);
  w.varint(h.seq);
  w.varint(h.ack_below);
  w.varint(h.now_ms);
  w.varint(argv.size());
  for (const auto& a : argv)
    w.length_prefixed(a);
  return out;
}

namespace {

bool parse_u64(std::string_view s, uint64_t& v) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, uint64_t(c - '0'), &x))
      return false;
  }
  v = x;
  return true;
}

}  // namespace

bool decode_write(std::string_view entry, WriteHeader& h, std::vector<std::string>& argv) {
  base::ByteReader r(entry.data(), entry.size());
  uint8_t version = 0, flags = 0;
  uint64_t argc = 0;
  if (!(r.u8(version) && version == kEntryVersion && r.u8(flags) && r.varint(h.client) &&
        r.varint(h.seq) && r.varint(h.ack_below) && r.varint(h.now_ms) &&
        r.varint_bounded(argc, entry.size()) && argc >= 1)) {
    return false;
  }
  if ((flags & ~kFlagOpensSession) != 0) return false;
  h.opens_session = (flags & kFlagOpensSession) != 0;
  argv.clear();
  argv.reserve(argc);
  for (uint64_t i = 0; i < argc; ++i) {
    std::string_view a;
    if (!r.length_prefixed(a, entry.size())) return false;
    argv.emplace_back(a);
  }
  return r.remaining() == 0;
}

bool well_formed_write(const std::vector<std::string>& argv) {
  if (argv.empty()) return false;
  const std::string& cmd = argv[0];
  const size_t n = argv.size();
  if (cmd == "SET") {
    if (n < 3) return false;
    bool nx = false, xx = false, pxat = false;
    for (size_t i = 3; i < n; ++i) {
      uint64_t at = 0;
      if (argv[i] == "NX" && !nx && !xx) {
        nx = true;
      } else if (argv[i] == "XX" && !nx && !xx) {
        xx = true;
      } else if (argv[i] == "PXAT" && !pxat && i + 1 < n && parse_u64(argv[i + 1], at)) {
        pxat = true;
        ++i;
      } else {
        return false;
      }
    }
    return true;
  }
  if (cmd == "DEL") return n >= 2;
  if (cmd == "APPEND") return n == 3;
  if (cmd == "INCRBY") {
    int64_t d = 0;
    return n == 3 && parse_i64(argv[2], d);
  }
  if (cmd == "MSET") return n >= 3 && n % 2 == 1;
  return false;
}

std::string encode_batch(const std::vector<std::string>& writes) {
  NORI_ASSERT(writes.size() >= 2 && writes.size() <= kBatchWritesMax, "batch of {} writes",
              writes.size());
  size_t bytes = 1 + 10;
  for (const auto& w : writes)
    bytes += 10 + w.size();
  std::string out;
  out.reserve(bytes);
  base::ByteWriter w(out);
  w.u8(kBatchVersion);
  w.varint(writes.size());
  for (const auto& e : writes)
    w.length_prefixed(e);
  return out;
}

bool is_batch(std::string_view entry) {
  return !entry.empty() && static_cast<uint8_t>(entry[0]) == kBatchVersion;
}

bool decode_batch(std::string_view entry, std::vector<std::string_view>& writes) {
  base::ByteReader r(entry.data(), entry.size());
  uint8_t version = 0;
  uint64_t n = 0;
  if (!(r.u8(version) && version == kBatchVersion && r.varint_bounded(n, kBatchWritesMax) &&
        n >= 2)) {
    return false;
  }
  writes.clear();
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view e;
    if (!r.length_prefixed(e, entry.size()) || is_batch(e)) return false;
    writes.push_back(e);
  }
  return r.remaining() == 0;
}

bool peek_session(std::string_view entry, uint64_t& client, uint64_t& seq) {
  if (is_batch(entry)) {
    // The first write's session: a batch's proposer waits under it.
    base::ByteReader b(entry.data(), entry.size());
    uint8_t version = 0;
    uint64_t n = 0;
    if (!(b.u8(version) && b.varint_bounded(n, kBatchWritesMax) && n >= 2 &&
          b.length_prefixed(entry, entry.size()))) {
      return false;
    }
  }
  base::ByteReader r(entry.data(), entry.size());
  uint8_t version = 0, flags = 0;
  return r.u8(version) && version == kEntryVersion && r.u8(flags) && r.varint(client) &&
         r.varint(seq);
}

base::Result<std::vector<std::string>> normalize_write(std::vector<std::string> argv,
                                                       uint64_t now_ms) {
  if (argv.empty()) return bad_input("ERR empty command");
  argv[0] = upper(argv[0]);
  const std::string& cmd = argv[0];
  auto arity = [&](size_t n, bool at_least) -> base::Status {
    if (at_least ? argv.size() < n : argv.size() != n) {
      return bad_input(fmt::format("ERR wrong number of arguments for '{}' command", cmd));
    }
    return {};
  };
  if (cmd == "SET") {
    NORI_TRY(arity(3, true));
    std::vector<std::string> out;
    out.reserve(argv.size() + 1);  // PXAT <ms> may replace EX <s>: one more at most
    out.push_back("SET");
    out.push_back(std::move(argv[1]));  // argv is ours: key and value move, not copy
    out.push_back(std::move(argv[2]));
    bool nx = false, xx = false, expiry = false;
    for (size_t i = 3; i < argv.size(); ++i) {
      const std::string opt = upper(argv[i]);
      if (opt == "NX" && !xx) {
        nx = true;
        out.push_back("NX");
      } else if (opt == "XX" && !nx) {
        xx = true;
        out.push_back("XX");
      } else if ((opt == "EX" || opt == "PX" || opt == "PXAT") && !expiry && i + 1 < argv.size()) {
        int64_t v = 0;
        if (!parse_i64(argv[i + 1], v)) return bad_input(std::string(kNotInteger));
        if (v <= 0) return bad_input("ERR invalid expire time in 'set' command");
        const int64_t cap = int64_t{1} << 50;  // ms: far beyond any real expiry, no overflow
        if (v > cap) return bad_input("ERR invalid expire time in 'set' command");
        const uint64_t at = opt == "EX"   ? now_ms + static_cast<uint64_t>(v) * 1000
                            : opt == "PX" ? now_ms + static_cast<uint64_t>(v)
                                          : static_cast<uint64_t>(v);
        out.push_back("PXAT");
        out.push_back(std::to_string(at));
        expiry = true;
        ++i;
      } else {
        return bad_input("ERR syntax error");
      }
    }
    return out;
  }
  if (cmd == "DEL") {
    NORI_TRY(arity(2, true));
    return argv;
  }
  if (cmd == "APPEND") {
    NORI_TRY(arity(3, false));
    return argv;
  }
  if (cmd == "INCR" || cmd == "DECR") {
    NORI_TRY(arity(2, false));
    return std::vector<std::string>{"INCRBY", argv[1], cmd == "INCR" ? "1" : "-1"};
  }
  if (cmd == "INCRBY" || cmd == "DECRBY") {
    NORI_TRY(arity(3, false));
    int64_t d = 0;
    if (!parse_i64(argv[2], d)) return bad_input(std::string(kNotInteger));
    if (cmd == "DECRBY") {
      if (d == INT64_MIN) return bad_input("ERR decrement would overflow");
      d = -d;
    }
    return std::vector<std::string>{"INCRBY", argv[1], std::to_string(d)};
  }
  if (cmd == "MSET") {
    if (argv.size() < 3 || argv.size() % 2 == 0) {
      return bad_input("ERR wrong number of arguments for 'mset' command");
    }
    return argv;
  }
  return bad_input(fmt::format("ERR unknown write command '{}'", cmd));
}

const Store::Value* Store::find_live(const std::string& key, uint64_t now_ms) {
  const Value* v = map_.find(key);
  if (v == nullptr) return nullptr;
  if (v->expire_at_ms != 0 && v->expire_at_ms <= now_ms) {
    map_.erase(key);
    return nullptr;
  }
  return v;
}

Store::Value* Store::find_live_mut(const std::string& key, uint64_t now_ms) {
  if (find_live(key, now_ms) == nullptr) return nullptr;  // copies nothing on a miss
  return map_.find_mut(key);
}

std::string Store::execute_write(std::vector<std::string>& argv) {
  const std::string& cmd = argv[0];
  std::string out;
  if (cmd == "SET") {
    bool nx = false, xx = false;
    uint64_t at = 0;
    for (size_t i = 3; i < argv.size(); ++i) {
      if (argv[i] == "NX") nx = true;
      if (argv[i] == "XX") xx = true;
      if (argv[i] == "PXAT") {
        at = std::stoull(argv[i + 1]);
        ++i;
      }
    }
    if (nx || xx) {
      const bool live = find_live(argv[1], clock_ms_) != nullptr;
      if ((nx && live) || (xx && !live)) {
        reply::null_bulk(out);
        return out;
      }
    }
    if (at != 0 && at <= clock_ms_) {  // already expired: the key is gone
      map_.erase(argv[1]);
      return reply::ok();
    }
    // argv is this apply's decoded copy: key and value move into the map. A
    // plain SET needs no find_live first: overwriting an expired key leaves
    // the same state as erasing it and inserting.
    map_.insert_or_assign(std::move(argv[1]), Value{std::move(argv[2]), at});
    return reply::ok();
  }
  if (cmd == "DEL") {
    int64_t n = 0;
    for (size_t i = 1; i < argv.size(); ++i) {
      if (find_live(argv[i], clock_ms_) != nullptr) {
        map_.erase(argv[i]);
        ++n;
      }
    }
    reply::integer(out, n);
    return out;
  }
  if (cmd == "APPEND") {
    Value* v = find_live_mut(argv[1], clock_ms_);
    if (v == nullptr) v = map_.try_emplace(std::move(argv[1]), Value{}).first;
    v->data += argv[2];
    reply::integer(out, static_cast<int64_t>(v->data.size()));
    return out;
  }
  if (cmd == "INCRBY") {
    int64_t delta = 0;
    NORI_ASSERT(parse_i64(argv[2], delta), "normalized INCRBY delta '{}'", argv[2]);
    Value* v = find_live_mut(argv[1], clock_ms_);
    int64_t cur = 0;
    if (v != nullptr && !parse_i64(v->data, cur)) return err_reply(kNotInteger);
    int64_t next = 0;
    if (__builtin_add_overflow(cur, delta, &next)) {
      return err_reply("ERR increment or decrement would overflow");
    }
    if (v == nullptr) v = map_.try_emplace(std::move(argv[1]), Value{}).first;
    v->data = std::to_string(next);
    reply::integer(out, next);
    return out;
  }
  if (cmd == "MSET") {
    for (size_t i = 1; i + 1 < argv.size(); i += 2)
      map_.insert_or_assign(std::move(argv[i]), Value{std::move(argv[i + 1]), 0});
    return reply::ok();
  }
  NORI_PANIC("unknown write command '{}' in the log", cmd);
}

void Store::touch_session(uint64_t client, Session& s) {
  lru_.splice(lru_.end(), lru_, s.lru);
  s.last_ms = clock_ms_;
}

void Store::expire_sessions() {
  // Oldest first: the LRU order is the order of last touch by log position,
  // the same on every replica.
  while (!lru_.empty()) {
    auto it = sessions_.find(lru_.front());
    NORI_ASSERT(it != sessions_.end(), "LRU names a missing session");
    const bool too_many = sessions_.size() > opt_.sessions_max;
    const bool idle = it->second.last_ms + opt_.session_ttl_ms < clock_ms_;
    if (!too_many && !idle) break;
    lru_.pop_front();
    sessions_.erase(it);
  }
}

void Store::apply(uint64_t index, std::string_view entry, std::vector<std::string>& replies) {
  NORI_ASSERT(index > applied_, "apply of index {} after {}", index, applied_);
  applied_ = index;
  if (!is_batch(entry)) {
    replies.push_back(apply_write(entry));
    return;
  }
  std::vector<std::string_view> writes;
  if (!decode_batch(entry, writes)) {
    ++malformed_entries_;
    replies.push_back(err_reply("ERR malformed batch entry in the log (not applied)"));
    return;
  }
  // In order, each with its own session check: a write of the batch that a
  // retry already applied answers its cached reply and is not applied again.
  for (std::string_view w : writes)
    replies.push_back(apply_write(w));
}

std::string Store::apply(uint64_t index, std::string_view entry) {
  if (!is_batch(entry)) {  // one write: no reply vector
    NORI_ASSERT(index > applied_, "apply of index {} after {}", index, applied_);
    applied_ = index;
    return apply_write(entry);
  }
  std::vector<std::string> replies;
  apply(index, entry, replies);
  if (replies.size() == 1) return std::move(replies[0]);
  std::string out;
  for (auto& r : replies)
    out += r;
  return out;
}

std::string Store::apply_write(std::string_view entry) {
  WriteHeader h;
  std::vector<std::string> argv;
  if (!decode_write(entry, h, argv) || !well_formed_write(argv)) {
    // Proposers validate every entry (and forwarded ones are authenticated
    // and validated again), so this is a bug elsewhere; answering an error
    // here is deterministic on every replica, where a panic would crash
    // every replica at the same index on every restart.
    ++malformed_entries_;
    return err_reply("ERR malformed entry in the log (not applied)");
  }
  clock_ms_ = std::max(clock_ms_, h.now_ms);

  Session* s = nullptr;
  if (h.client != 0) {
    auto it = sessions_.find(h.client);
    if (it == sessions_.end()) {
      if (!h.opens_session) {
        expire_sessions();
        return std::string(kSessionExpiredReply);
      }
      Session fresh;
      fresh.lru = lru_.insert(lru_.end(), h.client);
      it = sessions_.emplace(h.client, std::move(fresh)).first;
    }
    s = &it->second;
    touch_session(h.client, *s);
    if (h.seq < s->ack_below) {
      // The client was already answered for this seq: a late duplicate.
      return err_reply("ERR duplicate of an already answered request");
    }
    if (auto hit = s->replies.find(h.seq); hit != s->replies.end()) {
      return hit->second;  // a retry or a forward that raced its original
    }
    if (h.ack_below > s->ack_below) {
      s->ack_below = h.ack_below;
      s->replies.erase(s->replies.begin(), s->replies.lower_bound(h.ack_below));
    }
  }
  std::string out = execute_write(argv);
  if (s != nullptr) {
    s->replies.emplace(h.seq, out);
    while (s->replies.size() > opt_.session_replies_max)
      s->replies.erase(s->replies.begin());
  }
  expire_sessions();
  return out;
}

std::unique_ptr<Store> Store::clone() const {
  auto c = std::make_unique<Store>(opt_);
  c->map_ = map_.snapshot();  // O(1): shares the trie (kv/pmap.h)
  // Sessions are copied: bounded by sessions_max x session_replies_max.
  c->sessions_.reserve(sessions_.size());
  for (uint64_t client : lru_) {
    Session s = sessions_.at(client);
    s.lru = c->lru_.insert(c->lru_.end(), client);
    c->sessions_.emplace(client, std::move(s));
  }
  c->applied_ = applied_;
  c->clock_ms_ = clock_ms_;
  return c;
}

std::optional<std::string> Store::reply_for(uint64_t client, uint64_t seq) const {
  auto it = sessions_.find(client);
  if (it == sessions_.end()) return std::nullopt;
  auto r = it->second.replies.find(seq);
  if (r == it->second.replies.end()) return std::nullopt;
  return r->second;
}

std::string Store::read(const std::vector<std::string>& argv, uint64_t now_ms) {
  NORI_ASSERT(!argv.empty(), "empty read");
  const std::string cmd = upper(argv[0]);
  std::string out;
  const uint64_t now = std::max(now_ms, clock_ms_);
  if (cmd == "GET" && argv.size() == 2) {
    const Value* v = find_live(argv[1], now);
    v ? reply::bulk(out, v->data) : reply::null_bulk(out);
  } else if (cmd == "STRLEN" && argv.size() == 2) {
    const Value* v = find_live(argv[1], now);
    reply::integer(out, v ? static_cast<int64_t>(v->data.size()) : 0);
  } else if (cmd == "MGET" && argv.size() >= 2) {
    reply::array_header(out, argv.size() - 1);
    for (size_t i = 1; i < argv.size(); ++i) {
      const Value* v = find_live(argv[i], now);
      v ? reply::bulk(out, v->data) : reply::null_bulk(out);
    }
  } else if (cmd == "EXISTS" && argv.size() >= 2) {
    int64_t n = 0;
    for (size_t i = 1; i < argv.size(); ++i)
      n += find_live(argv[i], now) != nullptr;
    reply::integer(out, n);
  } else if (cmd == "DBSIZE" && argv.size() == 1) {
    reply::integer(out, static_cast<int64_t>(map_.size()));
  } else {
    reply::error(out, fmt::format("ERR wrong number of arguments or unknown read '{}'", argv[0]));
  }
  return out;
}

// ---- snapshots -------------------------------------------------------------
//
// Stream: u64 magic, u32 version, u64 applied index, u64 clock_ms, then
// records (u32 payload length, u8 type, payload), then an end record whose
// payload is u64 sessions, u64 keys; then u64 XXH3 of every byte before it.

namespace {

class SnapshotWriter {
 public:
  explicit SnapshotWriter(std::ostream& out) : out_(out), st_(XXH3_createState()) {
    NORI_ASSERT(st_ != nullptr, "XXH3_createState");
    XXH3_64bits_reset(st_.get());
  }
  void raw(std::string_view b) {
    XXH3_64bits_update(st_.get(), b.data(), b.size());
    out_.write(b.data(), static_cast<std::streamsize>(b.size()));
  }
  void record(uint8_t type, std::string_view payload) {
    buf_.clear();
    base::ByteWriter w(buf_);
    w.u32(static_cast<uint32_t>(payload.size()));
    w.u8(type);
    raw(buf_);
    raw(payload);
  }
  void finish() {
    std::string t;
    base::ByteWriter(t).u64(XXH3_64bits_digest(st_.get()));
    out_.write(t.data(), static_cast<std::streamsize>(t.size()));
  }

 private:
  struct Free {
    void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
  };
  std::ostream& out_;
  std::unique_ptr<XXH3_state_t, Free> st_;
  std::string buf_;
};

class SnapshotReader {
 public:
  explicit SnapshotReader(std::istream& in) : in_(in), st_(XXH3_createState()) {
    NORI_ASSERT(st_ != nullptr, "XXH3_createState");
    XXH3_64bits_reset(st_.get());
  }
  base::Status read(size_t n, std::string& out, bool hash = true) {
    out.resize(n);
    in_.read(out.data(), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in_.gcount()) != n) return corrupt("truncated");
    if (hash) XXH3_64bits_update(st_.get(), out.data(), n);
    return {};
  }
  uint64_t digest() const { return XXH3_64bits_digest(st_.get()); }

 private:
  struct Free {
    void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
  };
  std::istream& in_;
  std::unique_ptr<XXH3_state_t, Free> st_;
};

}  // namespace

base::Status Store::write_snapshot(std::ostream& out) const {
  SnapshotWriter w(out);
  std::string hdr;
  base::ByteWriter hw(hdr);
  hw.u64(kSnapshotMagic);
  hw.u32(kSnapshotVersion);
  hw.u64(applied_);
  hw.u64(clock_ms_);
  w.raw(hdr);
  std::string rec;
  // Sessions in LRU order so a restore rebuilds the same eviction order.
  for (uint64_t client : lru_) {
    const Session& s = sessions_.at(client);
    rec.clear();
    base::ByteWriter rw(rec);
    rw.varint(client);
    rw.varint(s.ack_below);
    rw.varint(s.last_ms);
    rw.varint(s.replies.size());
    for (const auto& [seq, reply] : s.replies) {
      rw.varint(seq);
      rw.length_prefixed(reply);
    }
    w.record(kRecordSession, rec);
  }
  for (const auto& [key, v] : map_) {
    rec.clear();
    base::ByteWriter rw(rec);
    rw.length_prefixed(key);
    rw.length_prefixed(v.data);
    rw.varint(v.expire_at_ms);
    w.record(kRecordKey, rec);
  }
  rec.clear();
  base::ByteWriter ew(rec);
  ew.u64(sessions_.size());
  ew.u64(map_.size());
  w.record(kRecordEnd, rec);
  w.finish();
  if (!out) return base::Error(base::ErrorKind::kIo, "snapshot: write to the stream failed");
  return {};
}

base::Status Store::restore(std::istream& in) {
  SnapshotReader r(in);
  std::string buf;
  NORI_TRY(r.read(8 + 4 + 8 + 8, buf));
  base::ByteReader hr(buf.data(), buf.size());
  uint64_t magic = 0, applied = 0, clock = 0;
  uint32_t version = 0;
  if (!hr.u64(magic) || magic != kSnapshotMagic) return corrupt("bad magic");
  if (!hr.u32(version) || version != kSnapshotVersion) return corrupt("unknown version");
  if (!hr.u64(applied) || !hr.u64(clock)) return corrupt("bad header");

  PersistentMap<Value> map;
  std::unordered_map<uint64_t, Session> sessions;
  std::list<uint64_t> lru;
  const size_t max = opt_.snapshot_record_bytes_max;
  while (true) {
    NORI_TRY(r.read(5, buf));
    base::ByteReader fr(buf.data(), buf.size());
    uint32_t len = 0;
    uint8_t type = 0;
    (void)fr.u32(len);
    (void)fr.u8(type);
    if (len > max) return corrupt(fmt::format("record of {} bytes over the {} limit", len, max));
    NORI_TRY(r.read(len, buf));
    base::ByteReader pr(buf.data(), buf.size());
    if (type == kRecordEnd) {
      uint64_t ns = 0, nk = 0;
      if (!pr.u64(ns) || !pr.u64(nk) || ns != sessions.size() || nk != map.size()) {
        return corrupt("record counts do not match the trailer");
      }
      break;
    }
    if (type == kRecordKey) {
      std::string_view k, v;
      uint64_t at = 0;
      if (!pr.length_prefixed(k, max) || !pr.length_prefixed(v, max) || !pr.varint(at) ||
          !pr.empty()) {
        return corrupt("bad key record");
      }
      if (!map.try_emplace(k, Value{std::string(v), at}).second) {
        return corrupt("duplicate key");
      }
    } else if (type == kRecordSession) {
      uint64_t client = 0, n = 0;
      Session s;
      if (!pr.varint(client) || !pr.varint(s.ack_below) || !pr.varint(s.last_ms) ||
          !pr.varint_bounded(n, buf.size())) {
        return corrupt("bad session record");
      }
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t seq = 0;
        std::string_view rep;
        if (!pr.varint(seq) || !pr.length_prefixed(rep, max)) return corrupt("bad session reply");
        s.replies.emplace(seq, std::string(rep));
      }
      if (sessions.count(client) != 0) return corrupt("duplicate session");
      s.lru = lru.insert(lru.end(), client);
      sessions.emplace(client, std::move(s));
    } else {
      return corrupt(fmt::format("unknown record type {}", type));
    }
  }
  const uint64_t digest = r.digest();
  NORI_TRY(r.read(8, buf, /*hash=*/false));
  if (base::load_u64(buf.data()) != digest) return corrupt("checksum mismatch");
  // Only now, with the whole stream verified, replace the state.
  map_ = std::move(map);
  sessions_ = std::move(sessions);
  lru_ = std::move(lru);
  applied_ = applied;
  clock_ms_ = clock;
  return {};
}

}  // namespace nori::kv
