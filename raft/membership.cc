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

void put_addresses(base::ByteWriter& w, const std::vector<MemberAddress>& v) {
  // Absent when empty: the encoding of a configuration without addresses is
  // the one from before addresses existed.
  if (v.empty()) return;
  w.varint(v.size());
  for (const MemberAddress& a : v) {
    w.varint(a.id);
    w.length_prefixed(a.address);
  }
}

bool get_addresses(base::ByteReader& r, std::vector<MemberAddress>& v) {
  if (r.empty()) return true;  // written without addresses (or before they existed)
  uint64_t n;
  // An explicit count of 0 is not canonical (the writer omits the trailer).
  if (!r.varint_bounded(n, kMembersMax) || n == 0) return false;
  v.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view a;
    if (!r.varint(v[i].id) || !r.length_prefixed(a, kMemberAddressBytesMax)) return false;
    v[i].address.assign(a);
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

const std::string* Membership::address_of(NodeId id) const {
  auto it = std::lower_bound(addresses.begin(), addresses.end(), id,
                             [](const MemberAddress& a, NodeId x) { return a.id < x; });
  return it != addresses.end() && it->id == id ? &it->address : nullptr;
}

void Membership::set_address(NodeId id, std::string address) {
  auto it = std::lower_bound(addresses.begin(), addresses.end(), id,
                             [](const MemberAddress& a, NodeId x) { return a.id < x; });
  const bool found = it != addresses.end() && it->id == id;
  if (address.empty()) {
    if (found) addresses.erase(it);
  } else if (found) {
    it->address = std::move(address);
  } else {
    addresses.insert(it, MemberAddress{id, std::move(address)});
  }
}

void Membership::drop_addresses_of_non_members() {
  std::erase_if(addresses, [this](const MemberAddress& a) { return !contains(a.id); });
}

void Membership::normalize() {
  sort_unique(voters);
  sort_unique(voters_outgoing);
  sort_unique(learners);
  sort_unique(promote);
  // Stable: of two addresses for one id, the last given wins.
  std::stable_sort(addresses.begin(), addresses.end(),
                   [](const MemberAddress& a, const MemberAddress& b) { return a.id < b.id; });
  std::vector<MemberAddress> unique;
  unique.reserve(addresses.size());
  for (MemberAddress& a : addresses) {
    if (!unique.empty() && unique.back().id == a.id) {
      unique.back() = std::move(a);
    } else {
      unique.push_back(std::move(a));
    }
  }
  addresses = std::move(unique);
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
  size_t address_bytes = 0;
  for (size_t i = 0; i < addresses.size(); ++i) {
    const MemberAddress& a = addresses[i];
    address_bytes += a.address.size();
    if (i > 0 && addresses[i - 1].id >= a.id) {
      return base::err(ErrorKind::kInvalidArgument,
                       "membership: addresses must be sorted by id and unique");
    }
    if (!contains(a.id)) {
      return base::err(ErrorKind::kInvalidArgument, "membership: address of non-member {}", a.id);
    }
    if (a.address.empty() || a.address.size() > kMemberAddressBytesMax) {
      return base::err(ErrorKind::kInvalidArgument,
                       "membership: address of {} is empty or longer than {} bytes", a.id,
                       kMemberAddressBytesMax);
    }
  }
  if (address_bytes > kMemberAddressesBytesMax) {
    return base::err(ErrorKind::kInvalidArgument, "membership: addresses take more than {} bytes",
                     kMemberAddressesBytesMax);
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
  put_addresses(w, addresses);
  return out;
}

base::Result<Membership> Membership::decode(std::string_view data) {
  base::ByteReader r(data);
  uint8_t version;
  Membership m;
  if (!r.u8(version) || version != kMembershipVersion || !get_list(r, m.voters) ||
      !get_list(r, m.voters_outgoing) || !get_list(r, m.learners) || !get_list(r, m.promote) ||
      !get_addresses(r, m.addresses) || !r.empty()) {
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
  if (!m.addresses.empty()) {
    s += " addresses={";
    for (size_t i = 0; i < m.addresses.size(); ++i) {
      if (i > 0) s += ",";
      s += std::to_string(m.addresses[i].id) + "=" + m.addresses[i].address;
    }
    s += "}";
  }
  return s;
}

}  // namespace nori::raft
