"""How evidence is computed: statistics, heads, interventions, units, probes, SAEs, circuits, OV, baselines, geometry and figures."""
