// AddressGossip: the members a core learns of from its peers' address books
// before its own log names them (internal to raft::Node; docs/net.md,
// "Members a node missed", and docs/wire-format.md section 7).
//
// Why: a node restarted after missing the configuration entry that added
// node N has neither N's address nor N in its accept policy: both come only
// from configurations, and the missed entries are sent only by the group's
// leader. When N leads every group of a core, and N's id is higher (the
// lower id dials, net/transport.h), nobody ever connects the two: the
// restarted node stays a pre-candidate with no leader for good. So, when a
// link comes up, each core hands the peer its address book (the members of
// its own configurations, their addresses and the incarnations it pinned;
// node_control.h, kAddressBook). A member this core's log has never named
// is admitted ("introduced") and dialed (if its id is higher) on the word of
// a member of this core's configurations; its incarnation, when the sender
// pinned one, is required at the handshake as for any member. Once the
// core catches up, its log names the member and the gossip stops mattering.
//
// What it does not weaken:
//   - The log wins. A member any configuration of this core has named since
//     the process started (log_named) is never introduced: its admission,
//     address and removal are the log's. So a gossiped address never
//     overrides one from a configuration, and a removal this core's log
//     holds is never undone by a peer that lags behind it.
//   - Only members vouch. A book is taken only from a member of this core's
//     configurations (or its contact list while joining), authenticated by
//     the link's handshake (cluster secret MAC, pinned incarnation); an
//     introduced node cannot introduce others (one hop).
//   - A sender's new book replaces its old one; a sender that leaves the
//     configurations is forgotten. A node the senders stop naming (they
//     committed its removal) is no longer admitted: its links are closed.
//   - Two senders naming different non-zero incarnations for a node: it is
//     not introduced (one of them lags behind a wipe and re-join; the log
//     settles it once this core hears from its leader some other way).
//     Two different addresses: the lowest sender id's is used (a wrong
//     address only costs failed dials; the handshake checks who answers).
//   What remains: a node removed in a configuration this core never saw,
//   named by a sender that has not seen the removal either, is admitted
//   here as long as that sender admits it too (and refused by every node
//   that has seen the removal).
//
// Bounded: at most one book per vouching member, each of at most
// kAddressBookEntriesMax entries (checked by the decoder).
// Plain data, owned by one CoreHost, used on its core only.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "raft/node/node_control.h"
#include "raft/types.h"

namespace nori::raft {

class AddressGossip {
 public:
  // A member admitted on the strength of peers' address books.
  struct Introduced {
    NodeId node = kNoNode;
    uint64_t incarnation = 0;  // 0: no sender pinned one (any is accepted)
    std::string address;       // member address ("host:port" of core 0)
    bool operator==(const Introduced&) const = default;
  };

  // `from`'s book (decoded, so sorted, unique and valid) replaces whatever
  // it sent before. The caller checked that `from` may vouch.
  void received(NodeId from, std::vector<AddressBookEntry> entries);
  // Forgets every book from a sender not in `vouchers` (it left this core's
  // configurations). True if anything was forgotten.
  bool keep_only(const std::set<NodeId>& vouchers);

  // The members to admit beyond the log's, sorted by node: every node some
  // sender named that is not `self` and not in `log_named`, unless two
  // senders disagree on its non-zero incarnation.
  std::vector<Introduced> introduced(const std::set<NodeId>& log_named, NodeId self) const;
  // Nodes left out of introduced() for conflicting incarnations (operators).
  std::vector<NodeId> conflicts(const std::set<NodeId>& log_named, NodeId self) const;

  size_t senders() const { return books_.size(); }

 private:
  std::map<NodeId, std::vector<AddressBookEntry>> books_;  // by sender
};

}  // namespace nori::raft
