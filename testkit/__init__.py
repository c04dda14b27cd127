"""The test kit of imagepull-doctor: everything that stands in for the world around the bot, apart from the product.

- `testkit.kube`: a simulated Kubernetes API server (`SimCluster`) and builders of real-shaped API objects;
- `testkit.oci`: a simulated OCI registry with fault knobs, and the real `docker-registry` process with a pusher;
- `testkit.slack`: a fake Slack Web API and Socket Mode server for the real `slack_sdk`, and a terminal view of threads;
- `testkit.world`: a started simulated world (cluster + fake Slack) and a kubelet stand-in that makes pods fail;
- `testkit.process`: the bot in its own process, for chaos tests;
- `testkit.demo`: the self-contained demo (`imagepull-doctor demo`).

The product (`bot`, `handlers`, `migrations`) never imports this package (an import-linter contract says so); the
demo, the benchmarks and the tests do. It is installed as its own distribution (`testkit/pyproject.toml`), which
plugs the `demo` and `sim` commands into the `imagepull-doctor` CLI through an entry point.
"""
