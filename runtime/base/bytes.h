// Byte helpers for every encoder and decoder in the project: fixed-width
// little-endian integers, LEB128 varints, and a bounds-checked reader.
//
// Decoding untrusted bytes (frames, WAL records, RESP) goes through
// `ByteReader`: every read checks the remaining length first and fails
// without reading past the end, so a decoder never trusts a length or count
// it has not bounded.
//
//   base::ByteWriter w(out);            // appends to a std::string
//   w.u32(kMagic); w.varint(index); w.bytes(payload);
//
//   base::ByteReader r(input);
//   uint32_t magic; uint64_t index; std::string_view payload;
//   if (!r.u32(magic) || !r.varint(index) || !r.bytes(len, payload)) -> malformed
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace nori::base {

static_assert(std::endian::native == std::endian::little,
              "nori-raft's on-disk and wire formats are little-endian; big-endian hosts would "
              "need byte swaps in bytes.h");

inline void store_u16(void* p, uint16_t v) {
  std::memcpy(p, &v, sizeof v);
}
inline void store_u32(void* p, uint32_t v) {
  std::memcpy(p, &v, sizeof v);
}
inline void store_u64(void* p, uint64_t v) {
  std::memcpy(p, &v, sizeof v);
}
inline uint16_t load_u16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline uint64_t load_u64(const void* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline constexpr size_t kVarintMaxBytes = 10;

// Number of bytes varint(v) takes.
inline constexpr size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writes v as LEB128 into p (which must have varint_size(v) bytes); returns bytes written.
inline size_t encode_varint(uint8_t* p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  p[n++] = static_cast<uint8_t>(v);
  return n;
}

// Appends to a std::string (used as a byte buffer).
class ByteWriter {
 public:
  explicit ByteWriter(std::string& out) : out_(out) {}

  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) { append(&v, sizeof v); }
  void u32(uint32_t v) { append(&v, sizeof v); }
  void u64(uint64_t v) { append(&v, sizeof v); }
  void varint(uint64_t v) {
    uint8_t buf[kVarintMaxBytes];
    append(buf, encode_varint(buf, v));
  }
  void bytes(std::string_view b) { out_.append(b); }
  // varint length, then the bytes.
  void length_prefixed(std::string_view b) {
    varint(b.size());
    bytes(b);
  }
  size_t size() const { return out_.size(); }

 private:
  void append(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string& out_;
};

// Bounds-checked reads from untrusted bytes. Each read returns false (and
// consumes nothing) when the input is too short or malformed.
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : p_(in.data()), end_(in.data() + in.size()) {}
  ByteReader(const void* p, size_t n)
      : p_(static_cast<const char*>(p)), end_(static_cast<const char*>(p) + n) {}

  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  bool empty() const { return p_ == end_; }
  const char* position() const { return p_; }

  [[nodiscard]] bool u8(uint8_t& v) {
    if (remaining() < 1) return false;
    v = static_cast<uint8_t>(*p_++);
    return true;
  }
  [[nodiscard]] bool u16(uint16_t& v) { return fixed(&v, sizeof v); }
  [[nodiscard]] bool u32(uint32_t& v) { return fixed(&v, sizeof v); }
  [[nodiscard]] bool u64(uint64_t& v) { return fixed(&v, sizeof v); }

  // LEB128; rejects encodings longer than 10 bytes or overflowing 64 bits.
  [[nodiscard]] bool varint(uint64_t& v) {
    uint64_t result = 0;
    const char* p = p_;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (p == end_) return false;
      uint8_t b = static_cast<uint8_t>(*p++);
      if (shift == 63 && b > 1) return false;  // would overflow 64 bits
      result |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) {
        p_ = p;
        v = result;
        return true;
      }
    }
    return false;
  }
  // A varint that must also be <= max (lengths and counts from the wire).
  [[nodiscard]] bool varint_bounded(uint64_t& v, uint64_t max) {
    const char* save = p_;
    if (!varint(v)) return false;
    if (v > max) {
      p_ = save;
      return false;
    }
    return true;
  }
  // A view of the next n bytes (no copy).
  [[nodiscard]] bool bytes(size_t n, std::string_view& out) {
    if (remaining() < n) return false;
    out = std::string_view(p_, n);
    p_ += n;
    return true;
  }
  // varint length (at most max), then that many bytes.
  [[nodiscard]] bool length_prefixed(std::string_view& out, uint64_t max) {
    const char* save = p_;
    uint64_t n;
    if (!varint_bounded(n, max) || !bytes(static_cast<size_t>(n), out)) {
      p_ = save;
      return false;
    }
    return true;
  }
  [[nodiscard]] bool skip(size_t n) {
    if (remaining() < n) return false;
    p_ += n;
    return true;
  }

 private:
  bool fixed(void* v, size_t n) {
    if (remaining() < n) return false;
    std::memcpy(v, p_, n);
    p_ += n;
    return true;
  }
  const char* p_;
  const char* end_;
};

// XXH3-64 of a byte range with a seed (checksums bound to a segment/offset
// pass those as the seed).
uint64_t xxh3_64(const void* data, size_t n, uint64_t seed = 0);
inline uint64_t xxh3_64(std::string_view s, uint64_t seed = 0) {
  return xxh3_64(s.data(), s.size(), seed);
}

// Rounds up/down to a power-of-two alignment.
inline constexpr uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}
inline constexpr uint64_t align_down(uint64_t v, uint64_t a) {
  return v & ~(a - 1);
}

}  // namespace nori::base
