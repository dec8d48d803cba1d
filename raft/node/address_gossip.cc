#include "raft/node/address_gossip.h"

#include <utility>

#include "runtime/base/assert.h"

namespace nori::raft {

namespace {

struct Merged {
  AddressGossip::Introduced member;
  bool conflict = false;
};

// Every node the books name outside log_named, merged across senders
// (visited in sender order, so the lowest sender's address is kept).
std::map<NodeId, Merged> merge(const std::map<NodeId, std::vector<AddressBookEntry>>& books,
                               const std::set<NodeId>& log_named, NodeId self) {
  std::map<NodeId, Merged> out;
  for (const auto& [sender, entries] : books) {
    for (const AddressBookEntry& e : entries) {
      if (e.node == self || log_named.contains(e.node)) continue;
      auto [it, fresh] = out.try_emplace(e.node);
      Merged& m = it->second;
      if (fresh) {
        m.member = {e.node, e.incarnation, e.address};
        continue;
      }
      if (e.incarnation == 0) continue;
      if (m.member.incarnation == 0) {
        m.member.incarnation = e.incarnation;  // the stricter word wins
      } else if (m.member.incarnation != e.incarnation) {
        m.conflict = true;
      }
    }
  }
  return out;
}

}  // namespace

void AddressGossip::received(NodeId from, std::vector<AddressBookEntry> entries) {
  NORI_ASSERT(from != kNoNode);
  NORI_ASSERT(entries.size() <= kAddressBookEntriesMax, "book of {} entries", entries.size());
  books_[from] = std::move(entries);
}

bool AddressGossip::keep_only(const std::set<NodeId>& vouchers) {
  bool changed = false;
  for (auto it = books_.begin(); it != books_.end();) {
    if (vouchers.contains(it->first)) {
      ++it;
    } else {
      it = books_.erase(it);
      changed = true;
    }
  }
  return changed;
}

std::vector<AddressGossip::Introduced> AddressGossip::introduced(const std::set<NodeId>& log_named,
                                                                 NodeId self) const {
  std::vector<Introduced> out;
  for (auto& [id, m] : merge(books_, log_named, self)) {
    if (!m.conflict) out.push_back(std::move(m.member));
  }
  return out;
}

std::vector<NodeId> AddressGossip::conflicts(const std::set<NodeId>& log_named, NodeId self) const {
  std::vector<NodeId> out;
  for (const auto& [id, m] : merge(books_, log_named, self)) {
    if (m.conflict) out.push_back(id);
  }
  return out;
}

}  // namespace nori::raft
