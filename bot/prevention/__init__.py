"""Prevention: find the pull failures that have not happened yet.

A latent-failure scan reads every workload's pod template (not its running pods: what matters is what the NEXT pod
will do), works out what kubelet would send and where the pod may land, and checks each distinct (image,
credentials) once against the registry:

- `workloads` (pure): pod templates of Deployments, StatefulSets, DaemonSets, CronJobs and bare pods, as specs;
- `placement` (pure): which nodes, so which platforms, a template may be scheduled on;
- `expiry` (pure): credentials that will expire (ECR tokens, tokens with an `exp` claim);
- `plan` (pure): the secret findings that need no registry, and the registry checks, coalesced;
- `findings` (pure): what a registry answer means for each workload that depends on it;
- `scanner`: the adapter that reads the cluster, probes within a budget and returns findings.
"""
