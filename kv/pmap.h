// PersistentMap: a string-keyed hash map whose copies share structure, so
// that a point-in-time copy of a shard's keys costs O(1) (kv/store.h clone).
//
// What it is: a hash array mapped trie (HAMT). A key's 64-bit hash (xxh3_64
// by default; tests inject a colliding one) is cut into digits: the lowest
// kRootBits (12) index a dense root array of 4096 slots, the rest are 5-bit
// digits, and each branch below the root holds a 32-bit bitmap of the digits
// present and a compact array of children (branches, leaves, or a collision
// node holding the leaves whose full 64-bit hashes are equal). The wide root
// takes two levels off every lookup (a 32-way root would need ~4 levels at
// 10^5 keys, each a likely cache miss) for 32 KiB per non-empty map and a
// one-off copy of those 32 KiB (4096 reference increments) by the first
// write after a snapshot: kv_bench BM_PmapFirstWriteAfterSnapshot, ~35 us on
// a loaded machine, releasing the previous snapshot's root included.
// Depth is bounded by the hash width (12 branch levels + 1 collision level
// with the 12-bit root), so every recursion here, node destruction
// included, is at most kMaxFrames deep whatever the map's size.
//
// Sharing: every node carries an atomic reference count. Copying a map
// (`snapshot()` or the copy constructor) takes one more reference on the
// root: O(1). A write path-copies: walking down from the root, a node whose
// count is above 1 is shared and is replaced (in this map only) by a fresh
// copy with count 1 whose children each gain a reference; an unshared node is
// written in place. So a write after a snapshot copies at most the nodes on
// one root-to-leaf path (O(depth)), and a write with no copy alive allocates
// nothing beyond what the structure itself needs (a new leaf, a branch that
// outgrows its capacity, a split). A shared node is never written again: it
// is immutable for as long as more than one map can reach it.
//
// Threading: one PersistentMap object is used by one thread at a time, like a
// std::unordered_map. Distinct map objects that share nodes may be used on
// different threads at once (the live map written on the shard's reactor
// while the snapshot thread iterates a snapshot of it, then drops it). The
// hand-off of a copy to another thread must itself be synchronized (a queue,
// a thread start). Memory order: the reference count is incremented relaxed
// (the new reference is derived from one this thread already holds);
// decremented acq_rel, so that every access a thread made through a
// reference happens before the node is destroyed or, when the count falls to
// 1, before the remaining owner writes it in place; and the "am I the only
// owner" check is an acquire load that pairs with those decrements (without
// it, the live map could write a node while the snapshot thread's last reads
// of it were still in flight).
//
// References and pointers returned by find / find_mut / try_emplace /
// insert_or_assign and iterators stay valid until the next write to, or the
// destruction of, THIS map object (a snapshot's own pointers are unaffected
// by writes to the live map). Iteration order is the trie order: stable for a
// given map object while it is not written, not between maps.
//
//   PersistentMap<Value> live;
//   live.insert_or_assign("k", Value{"v", 0});
//   PersistentMap<Value> snap = live.snapshot();   // O(1)
//   live.erase("k");                                // path-copies; snap unchanged
//   std::thread t([s = std::move(snap)] { for (const auto& [k, v] : s) use(k, v); });
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <new>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "runtime/base/assert.h"
#include "runtime/base/bytes.h"

namespace nori::kv {

// The default key hash: XXH3-64 (fast on short keys, well mixed in every bit,
// which the trie's digits rely on).
struct PmapHash {
  uint64_t operator()(std::string_view key) const noexcept { return base::xxh3_64(key); }
};

template <class V, class Hash = PmapHash, unsigned kRootBits = 12>
class PersistentMap {
  struct Node;
  struct Leaf;

 public:
  using key_type = std::string;
  using mapped_type = V;
  using value_type = std::pair<const std::string, V>;

  // Bound of the trie: the root takes kRootBits of the hash, each level
  // below 5 more, until all 64 bits are used; then one collision level.
  static constexpr unsigned kBits = 5;
  static constexpr unsigned kFanout = 1u << kBits;
  static constexpr size_t kRootSlots = size_t{1} << kRootBits;
  static constexpr unsigned kBranchLevels = 1 + (64 - kRootBits + kBits - 1) / kBits;
  static constexpr unsigned kMaxFrames = kBranchLevels + 1;
  static_assert(kFanout == 32, "a branch's bitmap is a uint32_t");
  static_assert(kRootBits >= kBits && kRootBits <= 16, "root of 32 to 65536 slots");
  static_assert(kRootBits + (kBranchLevels - 2) * kBits < 64 &&
                kRootBits + (kBranchLevels - 1) * kBits >= 64);

  PersistentMap() = default;
  explicit PersistentMap(Hash hash) : hash_(std::move(hash)) {}
  ~PersistentMap() { clear(); }
  // O(1): shares the root.
  PersistentMap(const PersistentMap& o) : root_(o.root_), size_(o.size_), hash_(o.hash_) {
    if (root_ != nullptr) inc_ref(root_);
  }
  PersistentMap& operator=(const PersistentMap& o) {
    if (this != &o) {
      PersistentMap copy(o);
      swap(copy);
    }
    return *this;
  }
  PersistentMap(PersistentMap&& o) noexcept
      : root_(std::exchange(o.root_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        hash_(std::move(o.hash_)) {}
  PersistentMap& operator=(PersistentMap&& o) noexcept {
    if (this != &o) {
      clear();
      swap(o);
    }
    return *this;
  }
  void swap(PersistentMap& o) noexcept {
    std::swap(root_, o.root_);
    std::swap(size_, o.size_);
    std::swap(hash_, o.hash_);
  }

  // A point-in-time copy, O(1). It may be handed to (and read, written and
  // dropped on) another thread while this map goes on being written.
  PersistentMap snapshot() const { return *this; }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Read-only lookup: copies nothing.
  const V* find(std::string_view key) const {
    const Leaf* l = find_leaf(hash_(key), key);
    return l != nullptr ? &l->kv.second : nullptr;
  }
  bool contains(std::string_view key) const { return find(key) != nullptr; }

  // Lookup for writing the value in place (APPEND, INCR): the path to the key
  // is made exclusive to this map first (copied where shared), so writes
  // through the pointer are invisible to every snapshot. An absent key copies
  // nothing.
  V* find_mut(std::string_view key) {
    if (root_ == nullptr) return nullptr;
    const uint64_t h = hash_(key);
    if (!unique(root_)) {
      if (find_leaf(h, key) == nullptr) return nullptr;  // a miss copies nothing
      own_root();
    }
    Node** slot = &root_->slots[root_digit(h)];
    unsigned shift = kRootBits;
    // Fast path: while every node on the way is ours alone, plain descent.
    while (*slot != nullptr) {
      Node* n = *slot;
      if (!unique(n)) return find_mut_shared(slot, h, key, shift);
      if (n->kind == Kind::kLeaf) {
        Leaf* l = as_leaf(n);
        return l->hash == h && l->kv.first == key ? &l->kv.second : nullptr;
      }
      if (n->kind == Kind::kCollision) {
        Node** ls = leaf_slot(as_collision(n), h, key);
        if (ls == nullptr) return nullptr;
        own(*ls);
        return &as_leaf(*ls)->kv.second;
      }
      NORI_ASSERT(n->kind == Kind::kBranch, "pmap: a root below the root");
      Branch* b = as_branch(n);
      const uint32_t bit = digit_bit(h, shift);
      if ((b->bitmap & bit) == 0) return nullptr;
      slot = &b->slots()[b->index(bit)];
      shift += kBits;
    }
    return nullptr;
  }

  // Inserts key -> V(args...) if the key is absent ("SET NX"): one descent.
  // Returns the (writable, exclusively owned) value and whether it was
  // inserted. An existing value is left as is (path-copied if shared).
  template <class K, class... Args>
  std::pair<V*, bool> try_emplace(K&& key, Args&&... args) {
    const std::string_view k(key);
    const uint64_t h = hash_(k);
    auto [slot, inserted] = emplace_slot(h, k, [&] {
      return new Leaf(h, std::string(std::forward<K>(key)), std::forward<Args>(args)...);
    });
    if (!inserted) own(*slot);
    return {&as_leaf(*slot)->kv.second, inserted};
  }

  // Sets key to value, inserting it if absent; one descent. A shared leaf is
  // replaced by a new one (key copied, the value moved in), never copied
  // whole; an unshared one is assigned in place.
  template <class K, class M>
  std::pair<V*, bool> insert_or_assign(K&& key, M&& value) {
    const std::string_view k(key);
    const uint64_t h = hash_(k);
    auto [slot, inserted] = emplace_slot(h, k, [&] {
      return new Leaf(h, std::string(std::forward<K>(key)), std::forward<M>(value));
    });
    if (!inserted) {
      Node* old = *slot;
      if (unique(old)) {
        as_leaf(old)->kv.second = std::forward<M>(value);
      } else {
        Leaf* fresh = new Leaf(h, as_leaf(old)->kv.first, std::forward<M>(value));
        *slot = fresh;
        dec_ref(old);
      }
    }
    return {&as_leaf(*slot)->kv.second, inserted};
  }

  // Removes key; false if absent (then nothing is copied). Branches left
  // with a single leaf or collision are folded into their parent, so a map
  // erased down to empty holds no nodes.
  bool erase(std::string_view key) {
    const uint64_t h = hash_(key);
    if (find_leaf(h, key) == nullptr) return false;
    own_root();
    Node*& slot = root_->slots[root_digit(h)];
    if (slot->kind == Kind::kLeaf) {
      dec_ref(slot);
      slot = nullptr;
    } else {
      erase_in(slot, h, key, kRootBits);
      fold(slot);
    }
    if (--size_ == 0) clear();
    return true;
  }

  void clear() {
    if (root_ != nullptr) dec_ref(root_);
    root_ = nullptr;
    size_ = 0;
  }

  // Forward iteration over every entry exactly once (trie order).
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = PersistentMap::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    const_iterator() = default;
    reference operator*() const { return leaf_->kv; }
    pointer operator->() const { return &leaf_->kv; }
    const_iterator& operator++() {
      advance();
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator old = *this;
      advance();
      return old;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      return a.leaf_ == b.leaf_;
    }

   private:
    friend class PersistentMap;
    struct Frame {
      const Node* node;  // the root, a branch or a collision node
      uint32_t next;     // index of the next child to visit
    };
    explicit const_iterator(const Node* root) {
      if (root == nullptr) return;
      stack_[0] = Frame{root, 0};
      depth_ = 1;
      advance();
    }
    void advance() {
      while (depth_ > 0) {
        Frame& f = stack_[depth_ - 1];
        const Node* c = next_child(f.node, f.next);
        if (c == nullptr) {
          --depth_;
          continue;
        }
        if (c->kind == Kind::kLeaf) {
          leaf_ = static_cast<const Leaf*>(c);
          return;
        }
        NORI_ASSERT(depth_ < kMaxFrames, "pmap: trie deeper than {} levels", kMaxFrames);
        stack_[depth_++] = Frame{c, 0};
      }
      leaf_ = nullptr;
    }
    Frame stack_[kMaxFrames] = {};
    unsigned depth_ = 0;
    const Leaf* leaf_ = nullptr;
  };
  using iterator = const_iterator;

  const_iterator begin() const { return const_iterator(root_); }
  const_iterator end() const { return const_iterator(); }

  // Shape of the trie, for tests and benchmarks (walks every node).
  struct Stats {
    size_t branches = 0;
    size_t leaves = 0;
    size_t collisions = 0;
    unsigned max_depth = 0;  // branch levels on the longest path
  };
  Stats stats() const {
    Stats s;
    if (root_ != nullptr) count(root_, 1, s);
    return s;
  }
  // True if both maps hold the very same root node (a snapshot not yet
  // diverged from its source). For tests.
  bool shares_root_with(const PersistentMap& o) const {
    return root_ != nullptr && root_ == o.root_;
  }

 private:
  enum class Kind : uint8_t { kRoot, kBranch, kLeaf, kCollision };

  struct Node {
    explicit Node(Kind k) : kind(k) {}
    std::atomic<uint32_t> refs{1};
    const Kind kind;
  };

  struct Leaf : Node {
    template <class K, class... Args>
    explicit Leaf(uint64_t h, K&& key, Args&&... args)
        : Node(Kind::kLeaf),
          hash(h),
          kv(std::piecewise_construct, std::forward_as_tuple(std::forward<K>(key)),
             std::forward_as_tuple(std::forward<Args>(args)...)) {}
    const uint64_t hash;
    value_type kv;
  };

  // Leaves (at least 2) whose keys differ but whose full hashes are equal.
  struct Collision : Node {
    explicit Collision(uint64_t h) : Node(Kind::kCollision), hash(h) {}
    const uint64_t hash;
    std::vector<Node*> leaves;
  };

  // A branch and its child array are one allocation: `cap` slots follow the
  // header, of which the first popcount(bitmap) are in use, in digit order.
  struct alignas(alignof(Node*)) Branch : Node {
    explicit Branch(uint8_t c) : Node(Kind::kBranch), cap(c) {}
    Node** slots() { return reinterpret_cast<Node**>(this + 1); }
    Node* const* slots() const { return reinterpret_cast<Node* const*>(this + 1); }
    unsigned count() const { return static_cast<unsigned>(std::popcount(bitmap)); }
    unsigned index(uint32_t bit) const {
      return static_cast<unsigned>(std::popcount(bitmap & (bit - 1)));
    }
    uint32_t bitmap = 0;
    const uint8_t cap;
  };
  static_assert(sizeof(Branch) % alignof(Node*) == 0, "slots follow the header aligned");

  // Dense: a null slot is empty. Only ever at the top of a map.
  struct Root : Node {
    Root() : Node(Kind::kRoot) {}
    Node* slots[kRootSlots] = {};
  };

  // Capacity of a branch created for a split (2 children).
  static constexpr uint8_t kSplitCap = 2;

  static size_t root_digit(uint64_t h) { return static_cast<size_t>(h & (kRootSlots - 1)); }

  static uint32_t digit_bit(uint64_t h, unsigned shift) {
    return uint32_t{1} << ((h >> shift) & (kFanout - 1));
  }
  static Leaf* as_leaf(Node* n) { return static_cast<Leaf*>(n); }
  static Branch* as_branch(Node* n) { return static_cast<Branch*>(n); }
  static Collision* as_collision(Node* n) { return static_cast<Collision*>(n); }
  static uint64_t node_hash(const Node* n) {
    return n->kind == Kind::kLeaf ? static_cast<const Leaf*>(n)->hash
                                  : static_cast<const Collision*>(n)->hash;
  }

  // ---- reference counting (see the header comment for the orders) ----
  static void inc_ref(Node* n) {
    const uint32_t before = n->refs.fetch_add(1, std::memory_order_relaxed);
    NORI_ASSERT(before > 0 && before < UINT32_MAX, "pmap: reference count {}", before);
  }
  static void dec_ref(Node* n) {
    const uint32_t before = n->refs.fetch_sub(1, std::memory_order_acq_rel);
    NORI_ASSERT(before > 0, "pmap: reference count underflow");
    if (before == 1) destroy(n);
  }
  // Only this map reaches n (given that every node above it is ours too).
  static bool unique(const Node* n) { return n->refs.load(std::memory_order_acquire) == 1; }

  // Depth of recursion: at most kMaxFrames + 1 (bounded by the hash width).
  static void destroy(Node* n) {
    switch (n->kind) {
      case Kind::kRoot: {
        Root* r = static_cast<Root*>(n);
        for (Node* c : r->slots) {
          if (c != nullptr) dec_ref(c);
        }
        delete r;
        return;
      }
      case Kind::kLeaf:
        delete as_leaf(n);
        return;
      case Kind::kCollision: {
        Collision* c = as_collision(n);
        for (Node* l : c->leaves)
          dec_ref(l);
        delete c;
        return;
      }
      case Kind::kBranch: {
        Branch* b = as_branch(n);
        const unsigned cnt = b->count();
        for (unsigned i = 0; i < cnt; ++i)
          dec_ref(b->slots()[i]);
        free_shell(b);
        return;
      }
    }
  }

  static Branch* new_branch(unsigned cap) {
    NORI_ASSERT(cap >= 1 && cap <= kFanout, "pmap: branch capacity {}", cap);
    void* mem = ::operator new(sizeof(Branch) + cap * sizeof(Node*));
    return new (mem) Branch(static_cast<uint8_t>(cap));
  }
  // Frees a branch's memory without touching its children's counts (the
  // caller has moved or released them).
  static void free_shell(Branch* b) {
    b->~Branch();
    ::operator delete(static_cast<void*>(b));
  }

  // Makes *slot exclusive to this map: a shared node is replaced by a copy
  // (count 1) whose children each gain a reference; the shared one loses ours.
  static void own(Node*& slot) {
    Node* n = slot;
    if (unique(n)) return;
    Node* copy = nullptr;
    switch (n->kind) {
      case Kind::kRoot: {
        const Root* r = static_cast<const Root*>(n);
        auto* rc = new Root();
        for (size_t i = 0; i < kRootSlots; ++i) {
          if (r->slots[i] != nullptr) {
            rc->slots[i] = r->slots[i];
            inc_ref(rc->slots[i]);
          }
        }
        copy = rc;
        break;
      }
      case Kind::kLeaf: {
        const Leaf* l = as_leaf(n);
        copy = new Leaf(l->hash, l->kv.first, l->kv.second);
        break;
      }
      case Kind::kCollision: {
        const Collision* c = as_collision(n);
        auto* cc = new Collision(c->hash);
        cc->leaves = c->leaves;
        for (Node* l : cc->leaves)
          inc_ref(l);
        copy = cc;
        break;
      }
      case Kind::kBranch: {
        Branch* b = as_branch(n);
        Branch* nb = new_branch(b->cap);
        nb->bitmap = b->bitmap;
        const unsigned cnt = b->count();
        for (unsigned i = 0; i < cnt; ++i) {
          nb->slots()[i] = b->slots()[i];
          inc_ref(nb->slots()[i]);
        }
        copy = nb;
        break;
      }
    }
    slot = copy;
    dec_ref(n);
  }

  // The root's slots array is exclusive to this map from here on.
  void own_root() {
    Node* r = root_;
    own(r);
    root_ = static_cast<Root*>(r);
  }

  // The child of n at index i or, in the root, the first non-empty one at or
  // after i; advances i past it. Null when there are no more.
  static const Node* next_child(const Node* n, uint32_t& i) {
    switch (n->kind) {
      case Kind::kRoot: {
        const Root* r = static_cast<const Root*>(n);
        while (i < kRootSlots && r->slots[i] == nullptr)
          ++i;
        return i < kRootSlots ? r->slots[i++] : nullptr;
      }
      case Kind::kBranch: {
        const Branch* b = static_cast<const Branch*>(n);
        return i < b->count() ? b->slots()[i++] : nullptr;
      }
      case Kind::kCollision: {
        const Collision* c = static_cast<const Collision*>(n);
        return i < c->leaves.size() ? c->leaves[i++] : nullptr;
      }
      case Kind::kLeaf:
        break;
    }
    NORI_PANIC("pmap: a leaf has no children");
  }

  static Node** leaf_slot(Collision* c, uint64_t h, std::string_view key) {
    if (c->hash != h) return nullptr;
    for (Node*& l : c->leaves) {
      if (as_leaf(l)->kv.first == key) return &l;
    }
    return nullptr;
  }

  const Leaf* find_leaf(uint64_t h, std::string_view key) const {
    if (root_ == nullptr) return nullptr;
    return find_leaf(root_->slots[root_digit(h)], h, key, kRootBits);
  }
  static const Leaf* find_leaf(const Node* n, uint64_t h, std::string_view key, unsigned shift) {
    while (n != nullptr) {
      switch (n->kind) {
        case Kind::kRoot:
          NORI_PANIC("pmap: a root below the root");
        case Kind::kLeaf: {
          const Leaf* l = static_cast<const Leaf*>(n);
          return l->hash == h && l->kv.first == key ? l : nullptr;
        }
        case Kind::kCollision: {
          const Collision* c = static_cast<const Collision*>(n);
          if (c->hash != h) return nullptr;
          for (const Node* l : c->leaves) {
            if (static_cast<const Leaf*>(l)->kv.first == key) return static_cast<const Leaf*>(l);
          }
          return nullptr;
        }
        case Kind::kBranch: {
          const Branch* b = static_cast<const Branch*>(n);
          const uint32_t bit = digit_bit(h, shift);
          if ((b->bitmap & bit) == 0) return nullptr;
          n = b->slots()[b->index(bit)];
          shift += kBits;
          break;
        }
      }
    }
    return nullptr;
  }

  // find_mut below a shared node: copies the path only if the key is there.
  V* find_mut_shared(Node** slot, uint64_t h, std::string_view key, unsigned shift) {
    if (find_leaf(*slot, h, key, shift) == nullptr) return nullptr;
    while (true) {
      own(*slot);
      Node* n = *slot;
      if (n->kind == Kind::kLeaf) return &as_leaf(n)->kv.second;
      if (n->kind == Kind::kCollision) {
        slot = leaf_slot(as_collision(n), h, key);
        continue;  // owns the leaf, then returns it
      }
      NORI_ASSERT(n->kind == Kind::kBranch, "pmap: a root below the root");
      Branch* b = as_branch(n);
      slot = &b->slots()[b->index(digit_bit(h, shift))];
      shift += kBits;
    }
  }

  // Puts `child` at position idx (digit `bit`) of the owned branch in *slot,
  // growing the branch (a new allocation, children moved, not re-counted)
  // when it is full.
  static Branch* insert_child(Node*& slot, unsigned idx, uint32_t bit, Node* child) {
    Branch* b = as_branch(slot);
    const unsigned cnt = b->count();
    if (cnt == b->cap) {
      Branch* nb = new_branch(std::min<unsigned>(kFanout, 2 * b->cap));
      nb->bitmap = b->bitmap;
      std::memcpy(nb->slots(), b->slots(), cnt * sizeof(Node*));
      free_shell(b);
      slot = nb;
      b = nb;
    }
    Node** s = b->slots();
    std::memmove(s + idx + 1, s + idx, (cnt - idx) * sizeof(Node*));
    s[idx] = child;
    b->bitmap |= bit;
    return b;
  }

  static void remove_child(Branch* b, unsigned idx, uint32_t bit) {
    const unsigned cnt = b->count();
    Node** s = b->slots();
    std::memmove(s + idx, s + idx + 1, (cnt - idx - 1) * sizeof(Node*));
    b->bitmap &= ~bit;
  }

  // One descent for insertion: path-copies every node on the way (the root,
  // branches, a collision node), and returns the slot, in an owned node, that
  // holds the key's leaf: the existing one (which may still be shared) or one
  // made by make() (then `inserted`). A slot holding another key (or another
  // hash's collision node) is split by pushing that node one level down until
  // the two hashes' digits differ. make() may move the key `key` views: it is
  // called last.
  template <class Make>
  std::pair<Node**, bool> emplace_slot(uint64_t h, std::string_view key, Make&& make) {
    if (root_ == nullptr) root_ = new Root();
    own_root();
    Node** slot = &root_->slots[root_digit(h)];
    if (*slot == nullptr) {
      *slot = make();
      ++size_;
      return {slot, true};
    }
    unsigned shift = kRootBits;
    while (true) {
      Node* n = *slot;
      if (n->kind == Kind::kBranch) {
        own(*slot);
        Branch* b = as_branch(*slot);
        const uint32_t bit = digit_bit(h, shift);
        const unsigned idx = b->index(bit);
        if ((b->bitmap & bit) == 0) {
          Node* leaf = make();
          b = insert_child(*slot, idx, bit, leaf);
          ++size_;
          return {&b->slots()[idx], true};
        }
        slot = &b->slots()[idx];
        shift += kBits;
        continue;
      }
      const uint64_t nh = node_hash(n);
      if (nh == h && n->kind == Kind::kLeaf) {
        if (as_leaf(n)->kv.first == key) return {slot, false};
        // Two keys, one 64-bit hash: a collision node takes over our
        // reference to the old leaf.
        auto* c = new Collision(h);
        c->leaves.reserve(2);
        c->leaves.push_back(n);
        c->leaves.push_back(make());
        *slot = c;
        ++size_;
        return {&c->leaves.back(), true};
      }
      if (nh == h) {  // this hash's collision node: the key is there or joins it
        own(*slot);
        Collision* c = as_collision(*slot);
        if (Node** ls = leaf_slot(c, h, key)) return {ls, false};
        c->leaves.push_back(make());
        ++size_;
        return {&c->leaves.back(), true};
      }
      // Different hashes share every digit so far: a new branch takes over
      // our reference to the node here; the loop goes on in it.
      NORI_ASSERT(shift < 64, "pmap: distinct hashes {:x} {:x} equal in every digit", h, nh);
      Branch* nb = new_branch(kSplitCap);
      nb->bitmap = digit_bit(nh, shift);
      nb->slots()[0] = n;
      *slot = nb;
    }
  }

  // Removes a key known to be present below *slot (a branch or a collision
  // node), path-copying on the way down and folding on the way up.
  // Recursion depth is bounded by kMaxFrames.
  static void erase_in(Node*& slot, uint64_t h, std::string_view key, unsigned shift) {
    own(slot);
    if (slot->kind == Kind::kCollision) {
      Collision* c = as_collision(slot);
      Node** ls = leaf_slot(c, h, key);
      NORI_ASSERT(ls != nullptr, "pmap: erase of a key not in its collision node");
      Node* leaf = *ls;
      c->leaves.erase(c->leaves.begin() + (ls - c->leaves.data()));
      dec_ref(leaf);
      if (c->leaves.size() == 1) {  // fold: the last leaf takes the collision's place
        slot = c->leaves.front();
        c->leaves.clear();
        dec_ref(c);  // ours alone (owned above): frees it
      }
      return;
    }
    NORI_ASSERT(slot->kind == Kind::kBranch, "pmap: a root below the root");
    Branch* b = as_branch(slot);
    const uint32_t bit = digit_bit(h, shift);
    NORI_ASSERT((b->bitmap & bit) != 0, "pmap: erase of a key not in the trie");
    const unsigned idx = b->index(bit);
    Node*& child = b->slots()[idx];
    if (child->kind == Kind::kLeaf) {
      Node* leaf = child;
      remove_child(b, idx, bit);
      dec_ref(leaf);
      return;
    }
    erase_in(child, h, key, child->kind == Kind::kBranch ? shift + kBits : shift);
    if (fold(child)) remove_child(b, idx, bit);
  }

  // After an erase below `child`: an owned branch left empty is freed (true:
  // the caller must drop the slot), one left with a lone leaf or collision
  // node is replaced by it (our reference moves up with it).
  static bool fold(Node*& child) {
    if (child->kind != Kind::kBranch) return false;
    Branch* cb = as_branch(child);
    const unsigned left = cb->count();
    if (left == 0) {
      dec_ref(cb);
      child = nullptr;
      return true;
    }
    if (left == 1 && cb->slots()[0]->kind != Kind::kBranch) {
      child = cb->slots()[0];
      cb->bitmap = 0;
      dec_ref(cb);  // the empty shell
    }
    return false;
  }

  static void count(const Node* n, unsigned depth, Stats& s) {
    switch (n->kind) {
      case Kind::kLeaf:
        ++s.leaves;
        return;
      case Kind::kCollision:
        ++s.collisions;
        s.leaves += static_cast<const Collision*>(n)->leaves.size();
        return;
      case Kind::kRoot:
      case Kind::kBranch: {
        ++s.branches;
        s.max_depth = std::max(s.max_depth, depth);
        uint32_t i = 0;
        while (const Node* c = next_child(n, i))
          count(c, depth + 1, s);
        return;
      }
    }
  }

  Root* root_ = nullptr;  // null when empty
  size_t size_ = 0;
  [[no_unique_address]] Hash hash_;
};

}  // namespace nori::kv
