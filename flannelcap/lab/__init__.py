"""A flannel VXLAN cluster in network namespaces: ``flannelcap lab``.

Students practise on it without a Raspberry Pi cluster; flannelcap's tests run against it.
"""

from flannelcap.lab._lab import Lab, teardown
from flannelcap.lab._plan import LabPlan, LabSpec, NodePlan, PodPlan, kubectl_nodes, kubectl_pods, plan_lab

__all__ = [
    "Lab",
    "LabPlan",
    "LabSpec",
    "NodePlan",
    "PodPlan",
    "kubectl_nodes",
    "kubectl_pods",
    "plan_lab",
    "teardown",
]
