// The SnatAllocator gRPC service (proto/sluice/v1/snat_allocator.proto) over SnatAllocator:
// checks each request's fields (errors name them) and maps the allocator's answers.
#pragma once

#include "controller/snat_allocator.h"
#include "sluice/v1/snat_allocator.grpc.pb.h"

namespace sluice::snatd {

/// Proto form of a chunk.
void ChunkToProto(const SnatChunkLease& lease, v1::SnatChunk* out);

class SnatAllocatorService final : public v1::SnatAllocator::Service {
 public:
  explicit SnatAllocatorService(SnatAllocator* allocator) : allocator_(allocator) {}

  grpc::Status RequestChunk(grpc::ServerContext*, const v1::RequestChunkRequest*,
                            v1::RequestChunkResponse*) override;
  grpc::Status ReturnChunk(grpc::ServerContext*, const v1::ReturnChunkRequest*,
                           v1::ReturnChunkResponse*) override;
  grpc::Status ListLeases(grpc::ServerContext*, const v1::ListLeasesRequest*,
                          v1::ListLeasesResponse*) override;
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*,
                      v1::HealthResponse*) override;

 private:
  SnatAllocator* allocator_;
};

/// A host (agent) name: 1..64 of A-Z a-z 0-9 . _ : - (it is a word in the state file).
bool ValidHostName(const std::string& name);

}  // namespace sluice::snatd
