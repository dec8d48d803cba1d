#include "raft/membership.h"

#include <algorithm>

#include "runtime/base/bytes.h"

namespace nori::raft {

namespace {

constexpr uint8_t kMembershipVersion = 1;

bool has(const std::vector<NodeId>& v, NodeId id) {
  return std::binary_search(v.begin(), v.end(), id);
}

bool sorted_unique_nonzero(const std::vector<NodeId>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == kNoNode) return false;
    if (i > 0 && v[i - 1] >= v[i]) return false;
  }
  return true;
}

void sort_unique(std::vector<NodeId>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

void put_list(base::ByteWriter& w, const std::vector<NodeId>& v) {
  w.varint(v.size());
  for (NodeId id : v)
    w.varint(id);
}

bool get_list(base::ByteReader& r, std::vector<NodeId>& v) {
  uint64_t n;
  if (!r.varint_bounded(n, kMembersMax)) return false;
  v.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (!r.varint(v[i])) return false;
  }
  return true;
}

std::string list_string(const std::vector<NodeId>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += ",";
    s += std::to_string(v[i]);
  }
  return s + "}";
}

}  // namespace

bool Membership::is_voter(NodeId id) const {
  return has(voters, id) || has(voters_outgoing, id);
}

bool Membership::is_learner(NodeId id) const {
  return has(learners, id);
}

std::vector<NodeId> Membership::others(NodeId self) const {
  std::vector<NodeId> out;
  out.reserve(voters.size() + voters_outgoing.size() + learners.size());
  out.insert(out.end(), voters.begin(), voters.end());
  out.insert(out.end(), voters_outgoing.begin(), voters_outgoing.end());
  out.insert(out.end(), learners.begin(), learners.end());
  sort_unique(out);
  out.erase(std::remove(out.begin(), out.end(), self), out.end());
  return out;
}

QuorumConfig Membership::quorum() const {
  return QuorumConfig(MajorityConfig(voters), MajorityConfig(voters_outgoing));
}

void Membership::normalize() {
  sort_unique(voters);
  sort_unique(voters_outgoing);
  sort_unique(learners);
  sort_unique(promote);
}

base::Status Membership::validate() const {
  using base::ErrorKind;
  if (!sorted_unique_nonzero(voters) || !sorted_unique_nonzero(voters_outgoing) ||
      !sorted_unique_nonzero(learners) || !sorted_unique_nonzero(promote)) {
    return base::err(ErrorKind::kInvalidArgument,
                     "membership: lists must be sorted, unique and without id 0");
  }
  if (voters.size() + voters_outgoing.size() + learners.size() > kMembersMax) {
    return base::err(ErrorKind::kInvalidArgument, "membership: more than {} members", kMembersMax);
  }
  for (NodeId id : learners) {
    if (is_voter(id)) {
      return base::err(ErrorKind::kInvalidArgument, "membership: {} is both voter and learner", id);
    }
  }
  for (NodeId id : promote) {
    if (!has(learners, id)) {
      return base::err(ErrorKind::kInvalidArgument, "membership: {} to promote is no learner", id);
    }
  }
  return {};
}

std::string Membership::encode() const {
  std::string out;
  base::ByteWriter w(out);
  w.u8(kMembershipVersion);
  put_list(w, voters);
  put_list(w, voters_outgoing);
  put_list(w, learners);
  put_list(w, promote);
  return out;
}

base::Result<Membership> Membership::decode(std::string_view data) {
  base::ByteReader r(data);
  uint8_t version;
  Membership m;
  if (!r.u8(version) || version != kMembershipVersion || !get_list(r, m.voters) ||
      !get_list(r, m.voters_outgoing) || !get_list(r, m.learners) || !get_list(r, m.promote) ||
      !r.empty()) {
    return base::err(base::ErrorKind::kCorruption, "membership: malformed encoding");
  }
  if (auto s = m.validate(); !s.ok()) {
    return base::Error(base::ErrorKind::kCorruption, s.error().message());
  }
  return m;
}

std::string to_string(const Membership& m) {
  std::string s = "voters=" + list_string(m.voters);
  if (m.joint()) s += " outgoing=" + list_string(m.voters_outgoing);
  if (!m.learners.empty()) s += " learners=" + list_string(m.learners);
  if (!m.promote.empty()) s += " promote=" + list_string(m.promote);
  return s;
}

}  // namespace nori::raft
