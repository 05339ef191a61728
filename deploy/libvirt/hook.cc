#include "deploy/libvirt/hook.h"

#include "common/config_reader.h"
#include "common/net_text.h"
#include "common/strings.h"

namespace sluice::libvirt {
namespace {

constexpr char kOrigin[] = "stdin";

std::string Who(const DomainIdentity& id) {
  return id.uuid.empty() ? StrCat("VM '", id.name, "'")
                         : StrCat("VM '", id.name, "' (", id.uuid, ")");
}

int AgentFailed(const HookOptions& options, const HookLog& log, const std::string& what,
                const absl::Status& status) {
  if (options.fail_closed) {
    log(LogLevel::kError, StrCat(what, " failed: ", status.ToString(), " (agent ", options.agent,
                                 "); fail-closed: refusing the operation"));
    return kExitAgentFailed;
  }
  log(LogLevel::kWarning, StrCat(what, " failed: ", status.ToString(), " (agent ", options.agent,
                                 "); fail-open: libvirt carries on without Sluice "
                                 "(fail_closed: true refuses instead)"));
  return kExitOk;
}

/// Reads the identity and checks it is the domain libvirt named; nullopt = not ours or bad.
std::optional<DomainIdentity> Identify(const HookCall& call, std::string_view xml,
                                       const HookLog& log, int* exit_code) {
  absl::StatusOr<DomainIdentity> identity = ParseDomainIdentity(xml, kOrigin);
  if (!identity.ok()) {
    log(LogLevel::kError,
        StrCat("domain '", call.domain, "' ", call.operation, ": ", identity.status().message()));
    *exit_code = kExitBadDomain;
    return std::nullopt;
  }
  if (identity->name != call.domain) {
    log(LogLevel::kError, StrCat("libvirt named domain '", call.domain,
                                 "' but the XML on stdin describes '", identity->name, "'"));
    *exit_code = kExitBadDomain;
    return std::nullopt;
  }
  if (!identity->has_sluice_metadata) {
    log(LogLevel::kInfo,
        StrCat(Who(*identity), " ", call.operation, ": no Sluice metadata (<vm xmlns='",
               kSluiceNamespace, "'> under <metadata>), not a Sluice VM"));
    *exit_code = kExitOk;
    return std::nullopt;
  }
  return *identity;
}

int Detach(const HookCall& call, const DomainIdentity& identity, std::string_view xml,
           const HookOptions& options, AgentClient::Deadline deadline, AgentClient& agent,
           const HookLog& log) {
  // A VM whose metadata was edited into something invalid while it ran is still detached,
  // under the name it gets when it binds a single interface.
  std::vector<std::string> names = {identity.name};
  absl::StatusOr<Domain> domain = ParseDomainXml(xml, kOrigin);
  absl::StatusOr<std::vector<std::string>> parsed =
      domain.ok() ? AttachmentNames(*domain)
                  : absl::StatusOr<std::vector<std::string>>(domain.status());
  if (parsed.ok()) {
    names = *parsed;
  } else {
    log(LogLevel::kWarning,
        StrCat(Who(identity), " ", call.operation, ": ", parsed.status().message(), "; detaching '",
               identity.name, "' only"));
  }
  for (const std::string& name : names) {
    absl::Status status = agent.DetachVm(name, deadline);
    if (absl::IsNotFound(status)) {
      log(LogLevel::kInfo, StrCat("'", name, "' was not attached (", status.message(), ")"));
    } else if (!status.ok()) {
      return AgentFailed(options, log, StrCat("DetachVm '", name, "' of ", Who(identity)), status);
    } else {
      log(LogLevel::kInfo, StrCat("detached '", name, "' (", call.operation, ")"));
    }
  }
  return kExitOk;
}

}  // namespace

HookAction ActionFor(std::string_view operation) {
  if (operation == "started") return HookAction::kAttach;
  if (operation == "stopped" || operation == "release") return HookAction::kDetach;
  return HookAction::kIgnore;
}

int RunHook(const HookCall& call, std::string_view domain_xml, const HookOptions& options,
            AgentClient::Deadline deadline, AgentClient& agent, const HookLog& log) {
  const HookAction action = ActionFor(call.operation);
  if (action == HookAction::kIgnore) return kExitOk;

  int exit_code = kExitOk;
  std::optional<DomainIdentity> identity = Identify(call, domain_xml, log, &exit_code);
  if (!identity) return exit_code;

  if (action == HookAction::kDetach)
    return Detach(call, *identity, domain_xml, options, deadline, agent, log);

  absl::StatusOr<Domain> domain = ParseDomainXml(domain_xml, kOrigin);
  absl::StatusOr<std::vector<VmPortAttachment>> plan =
      domain.ok() ? PlanAttachments(*domain, options.sysfs_root)
                  : absl::StatusOr<std::vector<VmPortAttachment>>(domain.status());
  if (!plan.ok()) {
    log(LogLevel::kError, StrCat(Who(*identity), " not attached: ", plan.status().message()));
    return kExitBadDomain;
  }
  size_t endpoints = 0;
  for (VmPortAttachment& a : *plan) {
    const std::string port = a.port;
    if (!options.send_port) a.port.clear();
    absl::Status status = agent.AttachVm(a, deadline);
    if (!status.ok()) {
      return AgentFailed(options, log, StrCat("AttachVm '", a.name, "' of ", Who(*identity)),
                         status);
    }
    endpoints += a.endpoints.size();
    log(LogLevel::kInfo, StrCat("attached '", a.name, "': ", MacToString(a.mac), " ",
                                Ipv4ToString(a.dip), " on ", port));
  }
  log(LogLevel::kInfo,
      StrCat("attached ", Who(*identity), ": ", plan->size(), " bound interface(s) of ",
             domain->interfaces.size(), ", ", endpoints, " VIP endpoint(s)"));
  return kExitOk;
}

absl::StatusOr<HookOptions> LoadHookConfig(const std::string& path, HookOptions base) {
  absl::StatusOr<ConfigNode> root = ConfigNode::LoadFile(path);
  if (!root.ok()) return root.status();
  root->AllowOnly({"agent", "fail_closed", "deadline_ms", "send_port"});
  base.agent = root->OptionalString("agent", base.agent);
  for (auto [key, field] :
       {std::pair{"fail_closed", &base.fail_closed}, std::pair{"send_port", &base.send_port}}) {
    if (!root->Has(key)) continue;
    std::string value = root->String(key);
    if (value == "true") {
      *field = true;
    } else if (value == "false") {
      *field = false;
    } else {
      root->Fail(key, "must be true or false");
    }
  }
  base.deadline = std::chrono::milliseconds(
      root->OptionalUint("deadline_ms", static_cast<uint64_t>(base.deadline.count()), 100, 30000));
  if (base.agent.empty()) root->Fail("agent", "must not be empty");
  if (!root->status().ok()) return root->status();
  return base;
}

}  // namespace sluice::libvirt
