// LazyDeque: a std::deque that allocates nothing until its first element
// and can give its memory back when empty (release()).
//
// Why: libstdc++'s std::deque allocates its map and a 512-byte block in its
// default constructor. A node hosting 10,000 idle groups paid that for every
// per-group queue that is empty almost always (pending proposals, stages,
// configurations waiting to be applied): ~600 bytes each, several per group
// (docs/node.md, "Memory per group"). Here an empty queue is one pointer.
//
// Only the operations the Raft core and its driver use; same complexity
// and iterator rules as std::deque while allocated. Not thread-safe (one
// owner thread, like the group that owns it).
#pragma once

#include <cstddef>
#include <deque>
#include <memory>

namespace nori::raft {

template <typename T>
class LazyDeque {
 public:
  using iterator = typename std::deque<T>::iterator;
  using const_iterator = typename std::deque<T>::const_iterator;

  LazyDeque() = default;
  LazyDeque(const LazyDeque& o)
      : d_(o.empty() ? nullptr : std::make_unique<std::deque<T>>(*o.d_)) {}
  LazyDeque& operator=(const LazyDeque& o) {
    if (this != &o) d_ = o.empty() ? nullptr : std::make_unique<std::deque<T>>(*o.d_);
    return *this;
  }
  LazyDeque(LazyDeque&&) noexcept = default;
  LazyDeque& operator=(LazyDeque&&) noexcept = default;

  bool empty() const { return d_ == nullptr || d_->empty(); }
  size_t size() const { return d_ == nullptr ? 0 : d_->size(); }
  // Element access: the deque must hold the element (as std::deque).
  T& operator[](size_t i) { return (*d_)[i]; }
  const T& operator[](size_t i) const { return (*d_)[i]; }
  T& front() { return d_->front(); }
  const T& front() const { return d_->front(); }
  T& back() { return d_->back(); }
  const T& back() const { return d_->back(); }

  void push_back(T v) {
    if (d_ == nullptr) d_ = std::make_unique<std::deque<T>>();
    d_->push_back(std::move(v));
  }
  void pop_front() { d_->pop_front(); }
  void pop_back() { d_->pop_back(); }
  // Frees the memory too.
  void clear() { d_.reset(); }
  // Gives the memory back if empty (the next push allocates again). Cheap
  // to call often; callers do it when the owner goes idle, not after every
  // pop, so a busy queue is not freed and reallocated round after round.
  void release() {
    if (d_ != nullptr && d_->empty()) d_.reset();
  }
  iterator erase(const_iterator first, const_iterator last) {
    if (d_ == nullptr) return iterator{};  // only the empty range exists
    return d_->erase(first, last);
  }

  // Iteration over an unallocated deque sees an empty range.
  iterator begin() { return d_ == nullptr ? iterator{} : d_->begin(); }
  iterator end() { return d_ == nullptr ? iterator{} : d_->end(); }
  const_iterator begin() const { return d_ == nullptr ? const_iterator{} : d_->cbegin(); }
  const_iterator end() const { return d_ == nullptr ? const_iterator{} : d_->cend(); }

 private:
  std::unique_ptr<std::deque<T>> d_;
};

}  // namespace nori::raft
