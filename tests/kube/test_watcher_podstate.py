"""Pure reading of pod and event dicts by the watcher."""

from __future__ import annotations

from bot.kube import podstate
from testkit.kube import objects as o


def test_pull_waits_in_every_container_kind() -> None:
    """Waiting pull reasons are found in init, regular and ephemeral containers; other waits are not."""
    pod = o.pod(
        "p",
        containers=[o.container("app", "a:1"), o.container("side", "b:1")],
        init_containers=[o.container("init", "c:1")],
        ephemeral_containers=[o.container("debug", "d:1")],
        waiting={"init": ("ErrImagePull", None), "debug": ("ImagePullBackOff", None), "side": ("CrashLoopBackOff", "")},
    )
    assert [(c.kind, c.name, c.image) for c in podstate.pull_waits(pod)] == [
        ("init", "init", "c:1"),
        ("ephemeral", "debug", "d:1"),
    ]


def test_stale_wait_after_image_change_is_skipped() -> None:
    """Right after the spec image changes, the status still names the old image: not a failure of the new one."""
    pod = o.pod("p", "ns", "bad:1", waiting={"app": ("ErrImagePull", None)})
    assert podstate.pull_waits(pod)
    assert podstate.pull_waits(o.set_image(pod, "app", "good:2")) == []


def test_the_cheap_status_test_never_misses_a_pull_wait() -> None:
    """`may_wait_on_pull` reads only statuses: false for running, crashing, creating and status-less pods, true for
    a pull wait of any container kind, and true (a superset) for a stale wait `pull_waits` then discards."""
    running = o.set_running(o.pod("ok", "ns"), "app")
    crashing = o.pod("crash", "ns", waiting={"app": ("CrashLoopBackOff", "back-off restarting")})
    creating = o.pod("new", "ns", waiting={"app": ("ContainerCreating", None)})
    no_status = {k: v for k, v in o.pod("bare", "ns").items() if k != "status"}
    init = o.pod("i", "ns", init_containers=[o.container("setup", "c:1")], waiting={"setup": ("ErrImagePull", None)})
    ephemeral = o.pod(
        "e", "ns", ephemeral_containers=[o.container("debug", "d:1")], waiting={"debug": ("ImagePullBackOff", None)}
    )
    stale = o.set_image(o.pod("s", "ns", "bad:1", waiting={"app": ("ErrImagePull", None)}), "app", "good:2")
    for pod in (running, crashing, creating, no_status):
        assert not podstate.may_wait_on_pull(pod) and podstate.pull_waits(pod) == []
    for pod in (init, ephemeral):
        assert podstate.may_wait_on_pull(pod) and podstate.pull_waits(pod)
    assert podstate.may_wait_on_pull(stale) and podstate.pull_waits(stale) == []


def test_field_paths_and_messages() -> None:
    """fieldPath names the container; generic back-off and pull-error events are told apart."""
    assert podstate.field_path_container("spec.initContainers{setup}") == ("init", "setup")
    assert podstate.field_path_container("spec.containers{web}") == ("container", "web")
    assert podstate.field_path_container(None) is None
    assert podstate.is_generic_backoff('Back-off pulling image "nginx:1.99"')
    assert not podstate.is_generic_backoff('Back-off pulling image "nginx:1.99": ErrImagePull: not found')
    assert podstate.is_pull_error_event("Failed", 'Failed to pull image "x": boom')
    assert not podstate.is_pull_error_event("Failed", "Error: ErrImagePull")
    assert podstate.error_text('Failed to pull image "x": rpc error: code = NotFound desc = boom') == "boom"


def test_owner_helpers() -> None:
    """The controller owner and the Deployment name implied by a ReplicaSet name."""
    _, rs, pods = o.deployment_with_pods("web")
    owner = podstate.controller_owner(pods[0])
    assert owner is not None
    assert owner["name"] == rs["metadata"]["name"]
    labels = pods[0]["metadata"]["labels"]
    assert podstate.deployment_name_guess(rs["metadata"]["name"], labels) == "web"
    assert podstate.deployment_name_guess("other-abc", labels) is None
    assert podstate.controller_owner(o.pod("bare")) is None
