// Mailbox: the bounded lock-free single-producer/single-consumer ring that
// carries messages from one reactor to another (one per ordered core pair).
//
// The producer reactor stages entries with `try_push` (not yet visible) and
// makes a whole batch visible with one `publish`; the consumer reactor takes
// a batch with `peek` and frees the slots with one `release`. A slot is one
// cache line: a function to run on the consumer plus either a pointer to a
// heap Message (ownership travels with it) or a small trivially copyable
// closure stored inline (post's fast path: no allocation at all).
//
// Memory orders (why each one):
//  - publish: tail_.store(release) pairs with the consumer's tail_.load(acquire),
//    so a message's contents written before publish are visible to the consumer.
//  - release: head_.store(release) pairs with the producer's head_.load(acquire),
//    so the consumer's reads of a slot happen before the producer reuses it.
//  - The sleep/wake handshakes (consumer_sleeping, producer_waiting) are Dekker
//    pairs: each side stores its flag or index, issues a seq_cst fence, then
//    loads the other side's; at least one of the two sides sees the other, so
//    no wake-up is lost (see Reactor's sleep protocol).
// Producer and consumer fields sit on separate cache lines, each side keeping a
// cached copy of the other's index so the shared line is read only when the
// cached view says full (producer) or empty (consumer).
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>

#include "runtime/base/assert.h"

namespace nori::runtime {

class Reactor;

inline constexpr size_t kCacheLineBytes = 64;

// A cross-core message. `run` executes on the consumer reactor and takes
// ownership (it frees or forwards the message).
struct Message {
  using Run = void (*)(Message*, Reactor&);
  explicit Message(Run r) : run(r) {}
  Run run;
  Message* next = nullptr;  // intrusive link for the producer's staging FIFO
  // Posts hold a destination credit until they enter the ring; requests hold
  // theirs until the reply is back (returned by the reply's run).
  bool credit_on_push = false;
};

// One ring entry, one cache line.
struct alignas(kCacheLineBytes) Slot {
  using Run = void (*)(Slot&, Reactor&);
  static constexpr size_t kInlineBytes = kCacheLineBytes - sizeof(Run) - sizeof(Message*);
  Run run;
  Message* msg;
  alignas(8) unsigned char inline_bytes[kInlineBytes];
};
static_assert(sizeof(Slot) == kCacheLineBytes);

// Closures that can travel inline in a Slot.
template <typename F>
inline constexpr bool kInlineClosure =
    std::is_trivially_copyable_v<F>&& std::is_trivially_destructible_v<F> &&
    sizeof(F) <= Slot::kInlineBytes && alignof(F) <= 8;

class SpscRing {
 public:
  explicit SpscRing(uint32_t slots) : mask_(slots - 1), slots_(new Slot[slots]) {
    NORI_ASSERT(std::has_single_bit(slots) && slots >= 2, "ring slots {} not a power of two",
                slots);
  }
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  uint32_t capacity() const { return mask_ + 1; }

  // ---- producer side (one thread) ----
  // Stages m; false when the ring is full (the caller keeps m and retries).
  [[nodiscard]] bool try_push(Message* m) {
    Slot* s = try_claim();
    if (s == nullptr) return false;
    s->run = &run_heap;
    s->msg = m;
    commit();
    return true;
  }
  // Stages a copy of fn, run as fn() on the consumer; false when full.
  template <typename F>
  requires kInlineClosure<F>
  [[nodiscard]] bool try_push_inline(const F& fn) {
    Slot* s = try_claim();
    if (s == nullptr) return false;
    s->run = &run_inline<F>;
    ::new (static_cast<void*>(s->inline_bytes)) F(fn);
    commit();
    return true;
  }
  // The next free slot (not yet staged), or nullptr when the ring is full.
  Slot* try_claim() {
    if (p_.tail - p_.cached_head > mask_) {
      p_.cached_head = head_.load(std::memory_order_acquire);
      if (p_.tail - p_.cached_head > mask_) return nullptr;
    }
    return &slots_[p_.tail & mask_];
  }
  void commit() { ++p_.tail; }
  // Makes every staged entry visible. Returns true if anything was new.
  bool publish() {
    if (p_.tail == p_.published) return false;
    p_.published = p_.tail;
    tail_.store(p_.tail, std::memory_order_release);
    return true;
  }
  // Published entries the consumer has not released yet (refreshes the cached
  // head: an acquire load of the consumer's line).
  uint32_t unconsumed() {
    p_.cached_head = head_.load(std::memory_order_acquire);
    return p_.published - p_.cached_head;
  }
  // True when every published entry has been consumed (and released).
  bool drained_by_consumer() const { return head_.load(std::memory_order_acquire) == p_.published; }

  // ---- consumer side (one thread) ----
  // The number of entries ready to consume (refreshes the cached tail when empty).
  uint32_t available() {
    if (c_.cached_tail == c_.head) c_.cached_tail = tail_.load(std::memory_order_acquire);
    return c_.cached_tail - c_.head;
  }
  // The i-th ready entry (i < available()).
  Slot& peek(uint32_t i) const { return slots_[(c_.head + i) & mask_]; }
  // Frees n consumed slots for the producer.
  void release(uint32_t n) {
    c_.head += n;
    head_.store(c_.head, std::memory_order_release);
  }
  // Sleep-protocol check, after the consumer's seq_cst fence: anything published?
  bool has_published_relaxed() const { return tail_.load(std::memory_order_relaxed) != c_.head; }

  // Handshake flags (see the header comment and Reactor's sleep protocol).
  // producer_waiting: the producer has entries it could not push and wants
  // a wake-up from the consumer once it frees slots.
  std::atomic<bool>& producer_waiting() { return producer_waiting_; }
  uint32_t producer_published_relaxed() const { return p_.published; }
  uint32_t head_relaxed() const { return head_.load(std::memory_order_relaxed); }

 private:
  // Consumer-written, producer-read.
  alignas(kCacheLineBytes) std::atomic<uint32_t> head_{0};
  // Producer-written, consumer-read.
  alignas(kCacheLineBytes) std::atomic<uint32_t> tail_{0};
  alignas(kCacheLineBytes) std::atomic<bool> producer_waiting_{false};
  // Producer-private.
  alignas(kCacheLineBytes) struct {
    uint32_t tail = 0;
    uint32_t published = 0;
    uint32_t cached_head = 0;
  } p_;
  // Consumer-private.
  alignas(kCacheLineBytes) struct {
    uint32_t head = 0;
    uint32_t cached_tail = 0;
  } c_;
  alignas(kCacheLineBytes) const uint32_t mask_;
  const std::unique_ptr<Slot[]> slots_;

  static void run_heap(Slot& s, Reactor& r) { s.msg->run(s.msg, r); }
  template <typename F>
  static void run_inline(Slot& s, Reactor&) {
    (*std::launder(reinterpret_cast<F*>(s.inline_bytes)))();
  }
};

}  // namespace nori::runtime
