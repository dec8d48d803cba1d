// RemovedGroups: the ids of the groups this core removed (Node::remove_group),
// kept in <data_dir>/removed-groups-core-<core>, so that a restart does not
// create one of them again, empty, from RaftConfig::groups: an application
// that keeps listing a retired shard there would otherwise bring back a
// replica with a forgotten vote and log (a wiped disk, for the group) the
// moment the node restarts. Only an explicit create_group(g) takes an id off
// the list.
//
// File: "nori-removed-groups 1", then one decimal id per line; replaced
// atomically (wal::write_file_durably). The core owns the in-memory list;
// the file is written on the core's snapshot worker (never on the reactor),
// one job per change, in order: each job writes the whole list as it was
// when the job was queued, so the file converges to the newest list.
//
// Threading: load() before the core starts (alien thread); everything else
// on the core's reactor, except the text a worker job writes.
#pragma once

#include <set>
#include <string>

#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

class RemovedGroups {
 public:
  RemovedGroups(std::string dir, std::string name) : dir_(std::move(dir)), name_(std::move(name)) {}
  // Reads the file (absent: no group removed). kCorruption if it does not
  // parse, kIo if it cannot be read.
  base::Status load();
  bool contains(GroupId g) const { return ids_.contains(g); }
  const std::set<GroupId>& ids() const { return ids_; }
  void set(GroupId g, bool removed);
  // The file's contents for the current list.
  std::string text() const;
  const std::string& dir() const { return dir_; }
  const std::string& name() const { return name_; }

 private:
  std::string dir_;
  std::string name_;
  std::set<GroupId> ids_;
};

}  // namespace nori::raft
