"""mcresolve: survive the loss of storage nodes, service instances and whole datacenters by
resolving dependencies through HashiCorp Consul (DNS, health watches, prepared queries)."""

__version__ = "0.1.0"
