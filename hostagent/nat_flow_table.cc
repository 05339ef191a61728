#include "hostagent/nat_flow_table.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/strings.h"

namespace sluice::agent {
namespace {

constexpr char kMagic[8] = {'S', 'L', 'N', 'A', 'T', 'F', 'L', 'W'};
constexpr uint32_t kVersion = 1;

// The state file: this header, then `capacity` NatFlow entries.
struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t entry_size;
  uint32_t capacity;
  uint32_t reserved;
  char boot_id[40];  // entries' timestamps are CLOCK_MONOTONIC, which restarts at boot
  uint8_t padding[64];
};
static_assert(sizeof(FileHeader) == 128);

uint32_t Hash(uint8_t proto, uint32_t a, uint16_t a_port, uint32_t b, uint16_t b_port) {
  uint64_t h = (uint64_t{a} << 32 | b) * 0x9e3779b97f4a7c15ull;
  h ^= (uint64_t{a_port} << 24 | uint64_t{b_port} << 8 | proto) * 0xc2b2ae3d27d4eb4full;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return static_cast<uint32_t>(h);
}

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id.substr(0, sizeof(FileHeader::boot_id) - 1);
}

bool ValidEntry(const NatFlow& f) {
  const uint8_t state = f.state;
  return state <= static_cast<uint8_t>(NatFlowState::kLast) &&
         (f.kind == static_cast<uint8_t>(NatFlowKind::kSnat) ||
          f.kind == static_cast<uint8_t>(NatFlowKind::kInbound)) &&
         (f.proto == 6 || f.proto == 17);
}

}  // namespace

NatFlowTable::NatFlowTable(NatFlow* entries, uint32_t capacity, void* mapping,
                           size_t mapping_len, int fd, std::string path)
    : entries_(entries),
      capacity_(capacity),
      mapping_(mapping),
      mapping_len_(mapping_len),
      fd_(fd),
      path_(std::move(path)) {
  uint32_t buckets = 1;
  while (buckets < capacity_) buckets <<= 1;
  bucket_mask_ = buckets - 1;
  inside_head_.assign(buckets, kNil);
  outside_head_.assign(buckets, kNil);
  inside_next_.assign(capacity_, kNil);
  outside_next_.assign(capacity_, kNil);
  free_.assign(capacity_, kNil);
  Rebuild();
}

NatFlowTable::~NatFlowTable() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_len_);
  if (fd_ >= 0) close(fd_);  // also releases the lock
}

std::unique_ptr<NatFlowTable> NatFlowTable::CreateAnonymous(uint32_t capacity) {
  const size_t len = size_t{capacity} * sizeof(NatFlow);
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  return std::unique_ptr<NatFlowTable>(
      new NatFlowTable(static_cast<NatFlow*>(m), capacity, m, len, -1, ""));
}

absl::StatusOr<std::unique_ptr<NatFlowTable>> NatFlowTable::OpenFile(const std::string& path,
                                                                     uint32_t capacity,
                                                                     std::string* note) {
  note->clear();
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        StrCat("flow state file ", path, ": cannot open: ", strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    return absl::FailedPreconditionError(StrCat(
        "flow state file ", path, ": locked by another process (",
        err == EWOULDBLOCK ? "is a second sluice-agent using the same nat.flow_state_file?"
                           : strerror(err),
        ")"));
  }
  const size_t len = sizeof(FileHeader) + size_t{capacity} * sizeof(NatFlow);
  const std::string boot_id = BootId();
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return absl::FailedPreconditionError(StrCat("flow state file ", path, ": ", strerror(err)));
  }
  FileHeader header{};
  bool reuse = false;
  if (st.st_size == 0) {
    *note = "new file";
  } else if (static_cast<size_t>(st.st_size) != len ||
             pread(fd, &header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header))) {
    *note = StrCat("size ", st.st_size, " does not fit ", capacity, " entries; starting empty");
  } else if (memcmp(header.magic, kMagic, sizeof(kMagic)) != 0 || header.version != kVersion ||
             header.entry_size != sizeof(NatFlow)) {
    *note = "not a flow state file of this version; starting empty";
  } else if (header.capacity != capacity) {
    *note = StrCat("written for ", header.capacity, " entries, configured ", capacity,
                   "; starting empty");
  } else if (std::string(header.boot_id, strnlen(header.boot_id, sizeof(header.boot_id))) !=
             boot_id) {
    *note = "written before the last reboot; starting empty";
  } else {
    reuse = true;
  }
  if (!reuse) {
    header = FileHeader{};
    memcpy(header.magic, kMagic, sizeof(kMagic));
    header.version = kVersion;
    header.entry_size = sizeof(NatFlow);
    header.capacity = capacity;
    memcpy(header.boot_id, boot_id.data(), boot_id.size());
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, static_cast<off_t>(len)) != 0 ||
        pwrite(fd, &header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header))) {
      int err = errno;
      close(fd);
      return absl::FailedPreconditionError(
          StrCat("flow state file ", path, ": cannot size it for ", capacity, " entries: ",
                 strerror(err)));
    }
  }
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    int err = errno;
    close(fd);
    return absl::FailedPreconditionError(
        StrCat("flow state file ", path, ": mmap: ", strerror(err)));
  }
  auto* entries = reinterpret_cast<NatFlow*>(static_cast<uint8_t*>(m) + sizeof(FileHeader));
  return std::unique_ptr<NatFlowTable>(new NatFlowTable(entries, capacity, m, len, fd, path));
}

uint32_t NatFlowTable::InsideBucket(const NatFlow& f) const {
  return Hash(f.proto, f.dip, f.dip_port, f.remote, f.remote_port) & bucket_mask_;
}

uint32_t NatFlowTable::OutsideBucket(const NatFlow& f) const {
  return Hash(f.proto, f.vip, f.vip_port, f.remote, f.remote_port) & bucket_mask_;
}

void NatFlowTable::Link(uint32_t i) {
  const uint32_t in = InsideBucket(entries_[i]);
  inside_next_[i] = inside_head_[in];
  inside_head_[in] = i;
  const uint32_t out = OutsideBucket(entries_[i]);
  outside_next_[i] = outside_head_[out];
  outside_head_[out] = i;
}

void NatFlowTable::Unlink(uint32_t i) {
  for (uint32_t* link = &inside_head_[InsideBucket(entries_[i])]; *link != kNil;
       link = &inside_next_[*link]) {
    if (*link == i) {
      *link = inside_next_[i];
      break;
    }
  }
  for (uint32_t* link = &outside_head_[OutsideBucket(entries_[i])]; *link != kNil;
       link = &outside_next_[*link]) {
    if (*link == i) {
      *link = outside_next_[i];
      break;
    }
  }
}

void NatFlowTable::Rebuild() {
  size_ = 0;
  free_count_ = 0;
  // Highest index last on the free stack, so inserts fill the table from the front.
  for (uint32_t i = capacity_; i-- > 0;) {
    NatFlow& f = entries_[i];
    if (StateOf(f) == NatFlowState::kFree) {
      free_[free_count_++] = i;
      continue;
    }
    if (!ValidEntry(f) ||
        FindInside(f.proto, f.dip, f.dip_port, f.remote, f.remote_port) != nullptr ||
        FindOutside(f.proto, f.vip, f.vip_port, f.remote, f.remote_port) != nullptr) {
      SetState(f, NatFlowState::kFree);
      free_[free_count_++] = i;
      continue;
    }
    Link(i);
    ++size_;
  }
  restored_ = size_;
}

uint32_t NatFlowTable::RemoveIf(const std::function<bool(const NatFlow&)>& remove) {
  uint32_t removed = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (StateOf(entries_[i]) != NatFlowState::kFree && remove(entries_[i])) {
      Remove(&entries_[i]);
      ++removed;
    }
  }
  return removed;
}

NatFlow* NatFlowTable::FindInside(uint8_t proto, uint32_t dip, uint16_t dip_port,
                                  uint32_t remote, uint16_t remote_port) {
  for (uint32_t i = inside_head_[Hash(proto, dip, dip_port, remote, remote_port) & bucket_mask_];
       i != kNil; i = inside_next_[i]) {
    NatFlow& f = entries_[i];
    if (f.dip == dip && f.remote == remote && f.dip_port == dip_port &&
        f.remote_port == remote_port && f.proto == proto) {
      return &f;
    }
  }
  return nullptr;
}

NatFlow* NatFlowTable::FindOutside(uint8_t proto, uint32_t vip, uint16_t vip_port,
                                   uint32_t remote, uint16_t remote_port) {
  for (uint32_t i = outside_head_[Hash(proto, vip, vip_port, remote, remote_port) & bucket_mask_];
       i != kNil; i = outside_next_[i]) {
    NatFlow& f = entries_[i];
    if (f.vip == vip && f.remote == remote && f.vip_port == vip_port &&
        f.remote_port == remote_port && f.proto == proto) {
      return &f;
    }
  }
  return nullptr;
}

NatFlow* NatFlowTable::Insert(const NatFlow& flow) {
  if (free_count_ == 0) return nullptr;
  const uint32_t i = free_[--free_count_];
  NatFlow& f = entries_[i];
  // Everything but the state first: a process killed half way leaves a free entry.
  NatFlow copy = flow;
  copy.state = static_cast<uint8_t>(NatFlowState::kFree);
  memcpy(static_cast<void*>(&f), &copy, sizeof(f));
  SetState(f, StateOf(flow));
  Link(i);
  ++size_;
  return &f;
}

void NatFlowTable::Remove(NatFlow* flow) {
  const uint32_t i = static_cast<uint32_t>(flow - entries_);
  SetState(*flow, NatFlowState::kFree);
  Unlink(i);
  free_[free_count_++] = i;
  --size_;
}

}  // namespace sluice::agent
