#include "tests/sim/kv.h"

#include "runtime/base/bytes.h"

namespace nori::sim {

namespace {
constexpr uint64_t kFieldBytesMax = 1 << 20;
}

std::string encode(const KvCommand& c) {
  std::string out;
  base::ByteWriter w(out);
  w.u8(static_cast<uint8_t>(c.op));
  w.varint(c.client);
  w.varint(c.seq);
  w.length_prefixed(c.key);
  w.length_prefixed(c.value);
  return out;
}

base::Result<KvCommand> decode_command(std::string_view data) {
  base::ByteReader r(data);
  KvCommand c;
  uint8_t op;
  std::string_view key, value;
  if (!r.u8(op) || (op != 1 && op != 2) || !r.varint(c.client) || !r.varint(c.seq) ||
      !r.length_prefixed(key, kFieldBytesMax) || !r.length_prefixed(value, kFieldBytesMax) ||
      !r.empty()) {
    return base::err(base::ErrorKind::kCorruption, "malformed KV command ({} bytes)", data.size());
  }
  c.op = static_cast<KvOp>(op);
  c.key = key;
  c.value = value;
  return c;
}

void KvStore::apply(const KvCommand& c) {
  if (c.op == KvOp::kPut) {
    data_[c.key] = c.value;
  } else {
    data_[c.key] += c.value;
  }
}

std::string KvStore::encode_state() const {
  std::string out;
  base::ByteWriter w(out);
  w.varint(data_.size());
  for (const auto& [k, v] : data_) {
    w.length_prefixed(k);
    w.length_prefixed(v);
  }
  return out;
}

base::Result<KvStore> KvStore::decode_state(std::string_view data) {
  base::ByteReader r(data);
  KvStore kv;
  uint64_t n = 0;
  if (!r.varint(n)) return base::err(base::ErrorKind::kCorruption, "KV snapshot without a count");
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view k, v;
    if (!r.length_prefixed(k, kFieldBytesMax) || !r.length_prefixed(v, kFieldBytesMax << 4)) {
      return base::err(base::ErrorKind::kCorruption, "KV snapshot truncated at pair {} of {}", i,
                       n);
    }
    kv.data_.emplace(std::string(k), std::string(v));
  }
  if (!r.empty()) return base::err(base::ErrorKind::kCorruption, "KV snapshot has trailing bytes");
  return kv;
}

std::string KvStore::get(const std::string& key) const {
  auto it = data_.find(key);
  return it == data_.end() ? std::string() : it->second;
}

}  // namespace nori::sim
