#!/usr/bin/env python3
"""Builds data/world/default.yaml, the embedded default world, from ../shared/data.

Sites are real cloud regions (AWS, Azure, GCP coordinates from world/cloud_regions.csv) plus
edge sites in large metros (world/worldcities_pop1m.csv); grid carbon from energy/impact.csv
(mlco2), else the country average noted beside the site; metros are every city of 1M+ people.
Run from the repository root: python3 scripts/build_world.py ../shared/data > data/world/default.yaml
With --full it writes the same world at 1:1 (data/world/planet-full.yaml): every count the default
world writes at 1:100 (requests, accelerators, replicas, power budgets, link and uplink Gbit/s) at
the real platform's.
"""
import csv
import math
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
FULL = "--full" in sys.argv[1:]
src = args[0] if args else "../shared/data"

regions = {}
for r in csv.DictReader(open(f"{src}/world/cloud_regions.csv", encoding="utf-8")):
    regions[(r["provider"], r["region"])] = (float(r["lat"]), float(r["lon"]))
carbon = {}
pue = {}
for r in csv.DictReader(open(f"{src}/energy/impact.csv", encoding="utf-8")):
    carbon[(r["provider"], r["region"])] = float(r["impact"])
    if r["PUE"]:
        pue[(r["provider"], r["region"])] = float(r["PUE"])
cities = {}
for r in csv.DictReader(open(f"{src}/world/worldcities_pop1m.csv", encoding="utf-8")):
    cities.setdefault(r["city_ascii"], r)

# Country averages (gCO2/kWh, Ember 2023, rounded) where impact.csv has no region.
country_carbon = {"Indonesia": 680, "United Arab Emirates": 420, "Israel": 530, "Chile": 290,
                  "Mexico": 420, "Nigeria": 400, "Congo (Kinshasa)": 30, "Kenya": 90,
                  "Egypt": 470, "Turkey": 410, "Russia": 440, "Iran": 500, "Pakistan": 400,
                  "Bangladesh": 570, "Thailand": 500, "Vietnam": 470, "Philippines": 610,
                  "Colombia": 210, "Peru": 260, "Argentina": 350, "Saudi Arabia": 560,
                  "China": 580, "India": 710, "United States": 370, "Brazil": 100,
                  "South Africa": 710, "Spain": 170}

# (provider, region, id, tier, pue)
cloud = [
    ("aws", "us-east-1", "us-east-virginia", "core"),
    ("aws", "us-west-2", "us-west-oregon", "core"),
    ("gcp", "us-central1", "us-central-iowa", "core"),
    ("aws", "eu-west-1", "eu-west-dublin", "core"),
    ("aws", "eu-central-1", "eu-central-frankfurt", "core"),
    ("aws", "ap-northeast-1", "ap-tokyo", "core"),
    ("aws", "ap-southeast-1", "ap-singapore", "core"),
    ("aws", "ap-south-1", "ap-mumbai", "core"),
    ("aws", "sa-east-1", "sa-sao-paulo", "core"),
    ("aws", "ap-southeast-2", "ap-sydney", "core"),
    ("aws", "us-west-1", "us-west-california", "regional"),
    ("aws", "us-east-2", "us-east-ohio", "regional"),
    ("azure", "southcentralus", "us-south-texas", "regional"),
    ("aws", "ca-central-1", "ca-montreal", "regional"),
    ("aws", "eu-west-2", "eu-london", "regional"),
    ("aws", "eu-west-3", "eu-paris", "regional"),
    ("aws", "eu-north-1", "eu-stockholm", "regional"),
    ("gcp", "europe-west4", "eu-netherlands", "regional"),
    ("gcp", "europe-west6", "eu-zurich", "regional"),
    ("aws", "ap-northeast-2", "ap-seoul", "regional"),
    ("aws", "ap-east-1", "ap-hong-kong", "regional"),
    ("gcp", "asia-east1", "ap-taiwan", "regional"),
    ("aws", "ap-northeast-3", "ap-osaka", "regional"),
    ("aws", "ap-southeast-3", "ap-jakarta", "regional", "Indonesia"),
    ("aws", "me-central-1", "me-uae", "regional", "United Arab Emirates"),
    ("aws", "il-central-1", "me-tel-aviv", "regional", "Israel"),
    ("aws", "af-south-1", "af-cape-town", "regional", "South Africa"),
    ("gcp", "southamerica-west1", "sa-santiago", "regional", "Chile"),
    ("aws", "mx-central-1", "na-mexico", "regional", "Mexico"),
    ("azure", "centralindia", "ap-pune", "regional"),
    ("azure", "australiasoutheast", "ap-melbourne", "regional"),
    # No site in China, Russia or Iran: the markets below exclude them (the assistants whose
    # traffic shares are published are not offered there).
]
edge = ["New York", "Los Angeles", "Chicago", "Bogota", "Lima", "Buenos Aires", "Rio de Janeiro",
        "Lagos", "Kinshasa", "Nairobi", "Cairo", "Istanbul", "Karachi",
        "Delhi", "Dhaka", "Kolkata", "Bangkok", "Ho Chi Minh City", "Manila", "Riyadh",
        "Madrid", "Lahore"]


def km(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


sites = []  # dict(id, lat, lon, tier, carbon, carbon_src, pue)
for entry in cloud:
    prov, reg, sid, tier = entry[:4]
    lat, lon = regions[(prov, reg)]
    if (prov, reg) in carbon:
        c, csrc = carbon[(prov, reg)], f"mlco2 impact.csv {prov} {reg}"
    else:
        c, csrc = country_carbon[entry[4]], f"Ember 2023 average, {entry[4]}"
    sites.append(dict(id=sid, lat=lat, lon=lon, tier=tier, carbon=c, csrc=csrc,
                      pue=pue.get((prov, reg), 1.12 if tier == "core" else 1.2),
                      where=f"{prov} {reg}"))
for name in edge:
    r = cities[name]
    sid = "edge-" + name.lower().replace(" ", "-")
    sites.append(dict(id=sid, lat=float(r["lat"]), lon=float(r["lng"]), tier="edge",
                      carbon=country_carbon[r["country"]], csrc=f"Ember 2023 average, {r['country']}",
                      pue=1.4, where=f"{name}, {r['country']}"))

pos = {s["id"]: (s["lat"], s["lon"]) for s in sites}
tier = {s["id"]: s["tier"] for s in sites}

# The backbone: every site to its nearest core or regional neighbours, plus the long-haul
# cables between continents (named after the real systems they stand for).
# Every count and capacity of the default world is 1/SCALE of the real platform's (docs/planet.md
# "Scale and sizing"): a 1.6T system is written as 16 Gbit/s.
SCALE = 100
# The factor every written count is multiplied by: 1 for the 1:100 model, SCALE for the full world.
K = SCALE if FULL else 1
links = {}


def add(a, b, note=""):
    key = tuple(sorted((a, b)))
    if key in links or a == b:
        return
    tiers = {tier[a], tier[b]}
    gbps = 1600 if tiers == {"core"} else (400 if "edge" in tiers else 800)
    links[key] = (gbps, note)


cloud_ids = [s["id"] for s in sites if s["tier"] != "edge"]
for s in sites:
    near = sorted((km(pos[s["id"]], pos[o]), o) for o in cloud_ids if o != s["id"])
    for _, o in near[: 2 if s["tier"] == "edge" else 3]:
        if near[0][0] < 4000 or _ < 4000 or o == near[0][1]:
            add(s["id"], o)
cables = [
    ("us-east-virginia", "eu-west-dublin", "transatlantic (Amitie/Dunant)"),
    ("us-east-virginia", "eu-paris", "transatlantic (Dunant)"),
    ("edge-new-york", "eu-london", "transatlantic (TAT-14 route)"),
    ("us-west-oregon", "ap-tokyo", "transpacific (Jupiter)"),
    ("us-west-california", "ap-hong-kong", "transpacific (PLCN)"),
    ("us-west-california", "ap-sydney", "transpacific (Southern Cross)"),
    ("ap-singapore", "ap-mumbai", "SEA-ME-WE"),
    ("ap-mumbai", "me-uae", "Arabian Sea (MENA)"),
    ("me-uae", "eu-central-frankfurt", "SEA-ME-WE via Suez"),
    ("me-tel-aviv", "eu-zurich", "Mediterranean"),
    ("sa-sao-paulo", "us-east-virginia", "Americas (Monet/Seabras)"),
    ("sa-sao-paulo", "eu-paris", "EllaLink/Atlantis"),
    ("af-cape-town", "eu-london", "West Africa (Equiano)"),
    ("af-cape-town", "ap-mumbai", "Indian Ocean (2Africa)"),
    ("ap-singapore", "ap-sydney", "Indigo"),
    ("ap-singapore", "ap-hong-kong", "APG"),
    ("ap-tokyo", "ap-singapore", "APG/SJC"),
    ("edge-lagos", "eu-paris", "2Africa/MainOne"),
    ("edge-nairobi", "me-uae", "2Africa/PEACE"),
    ("sa-santiago", "edge-lima", "Pacific South America"),
    ("na-mexico", "us-south-texas", "terrestrial"),
    ("edge-bogota", "us-south-texas", "ARCOS/Caribbean"),
]
for a, b, note in cables:
    add(a, b, note)

# Connectivity check.
adj = {s: set() for s in pos}
for a, b in links:
    adj[a].add(b)
    adj[b].add(a)
seen, todo = {sites[0]["id"]}, [sites[0]["id"]]
while todo:
    for n in adj[todo.pop()]:
        if n not in seen:
            seen.add(n)
            todo.append(n)
assert len(seen) == len(pos), set(pos) - seen

# UTC offsets in hours (standard time) by country; elsewhere from longitude.
tz = {"China": 8, "India": 5.5, "Japan": 9, "South Korea": 9, "Indonesia": 7, "Pakistan": 5,
      "Bangladesh": 6, "Vietnam": 7, "Thailand": 7, "Philippines": 8, "Iran": 3.5, "Turkey": 3,
      "Egypt": 2, "Nigeria": 1, "Saudi Arabia": 3, "United Kingdom": 0, "France": 1, "Germany": 1,
      "Spain": 1, "Italy": 1, "Taiwan": 8, "Malaysia": 8, "Singapore": 8, "Argentina": -3,
      "Colombia": -5, "Peru": -5, "Chile": -4, "Venezuela": -4, "Ethiopia": 3, "Kenya": 3,
      "South Africa": 2, "Myanmar": 6.5, "Nepal": 5.75, "Afghanistan": 4.5, "Iraq": 3,
      "Algeria": 1, "Morocco": 1, "Sri Lanka": 5.5, "Mexico": -6}

# Demand by country: the shares of Claude.ai conversations Anthropic publishes per country
# (Anthropic Economic Index, country usage shares for 2026-05, top 30; US 20.2% and India 7.1%
# agree with the September 2025 report's 21.6% and 7.2%); what they leave goes to the other
# countries by population; China, Russia, Iran, North Korea and Hong Kong, where these
# assistants are not offered, are excluded. docs/planet.md "Demand" has the sources.
MARKETS = {
    "United States": 0.2016, "India": 0.0712, "France": 0.0395, "United Kingdom": 0.0347,
    "Brazil": 0.0333, "Japan": 0.0328, "South Korea": 0.0324, "Germany": 0.0298,
    "Australia": 0.0265, "Canada": 0.0263, "Indonesia": 0.0208, "Spain": 0.0205, "Italy": 0.0150,
    "Mexico": 0.0132, "Pakistan": 0.0108, "Netherlands": 0.0107, "Argentina": 0.0105,
    "Colombia": 0.0103, "Turkey": 0.0088, "Thailand": 0.0086, "Vietnam": 0.0085,
    "Philippines": 0.0080, "Taiwan": 0.0079, "Poland": 0.0075, "Nigeria": 0.0073,
    "Switzerland": 0.0070, "Belgium": 0.0068, "Egypt": 0.0062, "Singapore": 0.0062,
    "United Arab Emirates": 0.0061,
}
EXCLUDED = ["China", "Russia", "Iran", "North Korea", "Hong Kong"]


def demand_weights():
    """The twin's rule (world.cpp set_demand_weights), for sizing the sites."""
    cpop, rest_pop = {}, 0
    for r in cities.values():
        c, p = r["country"], int(r["population"])
        if c in EXCLUDED:
            continue
        if c in MARKETS:
            cpop[c] = cpop.get(c, 0) + p
        else:
            rest_pop += p
    rest = 1 - sum(MARKETS[c] for c in cpop)
    out = {}
    for name, r in cities.items():
        c, p = r["country"], int(r["population"])
        out[name] = 0 if c in EXCLUDED else (MARKETS[c] * p / cpop[c] if c in MARKETS else rest * p / rest_pop)
    return out


WORKLOAD = """
workload:
  requests_per_day: 24000000
  # The minute-to-minute rhythm of Azure's production conversation trace (one hour, looped).
  arrival_trace: traces/AzureLLMInferenceTrace_conv.csv
  # Relative demand by local hour, 0 to 23 (normalized to mean 1): a trough before dawn, a
  # working-day plateau and an evening peak, the shape of consumer chat traffic.
  diurnal: [0.45, 0.35, 0.30, 0.28, 0.30, 0.40, 0.60, 0.85, 1.05, 1.20, 1.30, 1.35,
            1.35, 1.35, 1.30, 1.30, 1.30, 1.35, 1.40, 1.45, 1.45, 1.30, 1.00, 0.70]
  classes:
    # Lengths of chat: the Azure 2023 conversation trace (mean 1155 prompt, 211 output tokens).
    - {name: chat, share: 0.45, priority: interactive, model: llama3-70b, prompt: "lognormal:1155:1.2",
       output: "lognormal:211:1.0", session_continue: 0.5, slo_ttft_ms: 2000, slo_tpot_ms: 100}
    - {name: assist, share: 0.20, priority: interactive, model: llama3-8b, prompt: "lognormal:600:1.0",
       output: "lognormal:150:1.0", session_continue: 0.3, slo_ttft_ms: 800, slo_tpot_ms: 50}
    - {name: critical, share: 0.05, priority: critical, model: llama3-70b, prompt: "lognormal:800:1.0",
       output: "lognormal:150:1.0", slo_ttft_ms: 1000, slo_tpot_ms: 80}
    - {name: batch, share: 0.14, priority: batch, model: llama3-70b, prompt: "lognormal:2048:1.0",
       output: "lognormal:512:1.0", slo_ttft_ms: 600000}
    # Multimodal: ServeGen mm-image text tokens, image counts and output lengths; about 530
    # tokens per image (ServeGen: 480 image tokens per request at 0.9 images); 0.6 MB per image;
    # a few audio clips and videos with the Azure 2025 schema's payloads.
    - {name: multimodal, share: 0.10, priority: interactive, model: llama3-70b,
       prompt: "servegen:mm_text_tokens", output: "servegen:mm_output_tokens",
       images: "servegen:mm_image_count", tokens_per_image: 530, mb_per_image: 0.6,
       audio_fraction: 0.05, audio_mb: 1.0, audio_tokens: 750,
       video_fraction: 0.03, video_mb: 15, video_tokens: 4000, slo_ttft_ms: 3000, slo_tpot_ms: 100}
    # Reasoning: ServeGen DeepSeek-R1 input and (bimodal) output lengths; 2 to 6 retrieval steps
    # that each pull 2 MB of context from a corpus shard, wherever it is held.
    - {name: reasoning, share: 0.06, priority: interactive, model: deepseek-v3,
       prompt: "servegen:r1_input_tokens", output: "servegen:r1_output_tokens",
       retrievals: "uniform:2:6", retrieval_mb: 2, retrieval_tokens: 1500, retrieval_compute_ms: 30,
       slo_ttft_ms: 15000, slo_tpot_ms: 150}
# The default day: a new model version and four index refreshes to pull, and a launch-day surge.
events:
  - {kind: publish, at: "03:00", repo: repo-models, artifact: llama3-70b-v2, model: llama3-70b, size_gb: 141}
  - {kind: publish, at: "00:30", repo: repo-index, artifact: index-0030, size_gb: 20}
  - {kind: publish, at: "06:30", repo: repo-index, artifact: index-0630, size_gb: 20}
  - {kind: publish, at: "12:30", repo: repo-index, artifact: index-1230, size_gb: 20}
  - {kind: publish, at: "18:30", repo: repo-index, artifact: index-1830, size_gb: 20}
  - {kind: surge, at: "14:00", duration: 2h, country: United States, factor: 2.0}
"""

out = []
w = out.append
w("# The embedded default world of infergrid (generated by scripts/build_world.py; edit that, not this).")
w("# Sites: real cloud regions (AWS/Azure/GCP coordinates, MIT, from cloud_regions.csv) and edge sites")
w("# in large metros; carbon: mlco2 impact.csv (MIT) or Ember 2023 country averages; metros: SimpleMaps")
w("# world cities with 1M+ people (CC-BY-4.0). See data/README.md.")
w("name: planet-full" if FULL else "name: planet-default")
w("route_factor: 1.68     # fiber path over great circle, fitted by `infergrid geo calibrate`")
w("per_hop_ms: 0.1        # switching and amplification per traversed site")
if FULL:
    w("scale: 1               # the real counts: the default world (1:100) with every count x 100")
else:
    w(f"scale: {SCALE}             # a 1:{SCALE} model: requests, accelerators, power, link and uplink Gbit/s as written")
    w(f"                       # are 1/{SCALE} of the real; weights and artifacts cross the DCI as size / scale")
# Background bulk copies (storage replication, backups, datasets, checkpoints) between neighbouring
# sites, below every class of traffic: B4's and SWAN's bulk class. The load is assumed (no provider
# publishes its copy volume per link); docs/planet.md "Bulk copies".
w("bulk:                  # background copies on every link, each way, below every class (docs/planet.md)")
w("  load: 0.5            # offered, as a share of the link's capacity (assumed)")
w("  copy_gb: 100         # one copy's mean size at full scale (exponential); crosses as size / scale")
w("markets:")
w("  shares: {" + ", ".join(f"{c}: {v}" for c, v in MARKETS.items()) + "}")
w("  exclude: [" + ", ".join(EXCLUDED) + "]")
w("repositories:")
w("  - {id: repo-models, site: us-east-virginia}")
w("  - {id: repo-index, site: eu-central-frankfurt}")
w("sites:")
shards = {"core": None}
core_ids = [s["id"] for s in sites if s["tier"] == "core"]
shard_of = {}
for i in range(8):
    for j in (0, 1):
        shard_of.setdefault(core_ids[(i * 3 + j * 5) % len(core_ids)], []).append(f"wiki-{i}")
# Size each cloud site by the demand nearest to it (the markets' weights of the metros of 1M+
# people), so that capacity follows demand the way operators plan it; every site keeps a floor.
share = {i: 0.0 for i in cloud_ids}
weights = demand_weights()
for name, r in cities.items():
    c = (float(r["lat"]), float(r["lng"]))
    share[min(cloud_ids, key=lambda i: km(pos[i], c))] += weights[name]
BUDGET_70B, BUDGET_R1, BUDGET_8B = 170, 120, 80
# Sites whose utility grants less than their pool's nameplate (kW at the 1:100 scale of the default
# world, docs/planet.md "Scale"): Northern Virginia, where Dominion Energy paused and then rationed
# new data-center connections in Loudoun County until its new 500 kV lines land (2022-2026).
CONSTRAINED = {"us-east-virginia": (115, "Dominion Energy's rationed allocation in Loudoun County (Loudoun Now, 2022-07-28 and 2022-08-09)")}
# Measured sizing (scripts/size_world.py, from a static day of the budget-sized world): replicas
# per cloud deployment so that its peak hour runs near 70% batch occupancy.
SIZING = {}
try:
    for r in csv.DictReader(open("data/world/sizing.csv", encoding="utf-8")):
        SIZING[(r["site"], r["model"])] = int(r["replicas"])
except FileNotFoundError:
    pass
for s in sites:
    t = s["tier"]
    if t == "edge":
        # Edge sites alternate between L40S (48 GB) and the smaller, cooler L4 (24 GB).
        edge_i = [x["id"] for x in sites if x["tier"] == "edge"].index(s["id"])
        deps = [("llama3-8b", "l40s", 1, 4)] if edge_i % 2 == 0 else [("llama3-8b", "l4", 1, 6)]
    else:
        sh = share[s["id"]]
        big = "b200" if s["id"] in ("us-east-virginia", "eu-central-frankfurt", "ap-tokyo") else "h200"
        r70 = max(3 if t == "core" else 2, math.ceil(BUDGET_70B * sh))
        r1 = max(2 if t == "core" else 1, math.ceil(BUDGET_R1 * sh * (0.7 if big == "b200" else 1)))
        r8 = max(4 if t == "core" else 2, math.ceil(BUDGET_8B * sh))
        deps = [("llama3-70b", "h100-80gb", 8, r70), ("llama3-8b", "h100-80gb", 1, r8)]
        if r1 > 0:
            deps.insert(1, ("deepseek-v3", big, 8, r1))
        if SIZING:
            deps = [(m, g, tp, SIZING.get((s["id"], m), n)) for m, g, tp, n in deps]
    gpus = {}
    for m, g, tp, n in deps:
        # A cloud site's pool holds half as many again as its declared replicas take (unpowered
        # until a controller starts replicas on them); an edge site holds what it runs.
        spare = math.ceil(n / 2) if t != "edge" and SIZING else 0
        gpus[g] = gpus.get(g, 0) + tp * (n + spare) * K
    tdp = {"h100-80gb": 0.7, "h200": 0.7, "b200": 1.0, "l40s": 0.35, "l4": 0.072}
    cap_kw = round(sum(tdp[g] * n / K for g, n in gpus.items()) * 1.6 + 50) * K  # the model's, rounded, x K
    if s["id"] in CONSTRAINED:
        cap_kw = CONSTRAINED[s["id"]][0] * K
    w(f"  - id: {s['id']}   # {s['where']}")
    w(f"    lat: {s['lat']:.4f}")
    w(f"    lon: {s['lon']:.4f}")
    w(f"    tier: {t}")
    w("    accelerators: {" + ", ".join(f"{g}: {n}" for g, n in gpus.items()) + "}")
    w(f"    power_cap_kw: {cap_kw}" + (f"   # {CONSTRAINED[s['id']][1]}" if s["id"] in CONSTRAINED else ""))
    w(f"    pue: {s['pue']}")
    w(f"    carbon_g_per_kwh: {s['carbon']}   # {s['csrc']}")
    w("    deployments:")
    for m, g, tp, n in deps:
        w(f"      - {{model: {m}, accelerator: {g}, tp: {tp}, replicas: {n * K}}}")
    if s["id"] in shard_of:
        w("    shards: [" + ", ".join(shard_of[s["id"]]) + "]")
w("links:")
for (a, b), (gbps, note) in sorted(links.items()):
    w(f"  - {{a: {a}, b: {b}, gbps: {gbps * K / SCALE:g}}}" + (f"   # {note}" if note else ""))
w("metros:")
for name, r in sorted(cities.items(), key=lambda kv: -int(kv[1]["population"])):
    lat, lon = float(r["lat"]), float(r["lng"])
    off = tz.get(r["country"], round(lon / 15 * 2) / 2)
    uplink = (100 if int(r["population"]) >= 5_000_000 else 40) * K / SCALE
    nm = name.replace('"', "")
    w(f"  - {{name: \"{nm}\", country: \"{r['country']}\", lat: {lat:.4f}, lon: {lon:.4f}, "
      f"population: {r['population']}, utc_offset: {off}, last_mile_ms: 8, uplink_gbps: {uplink:g}}}")
w(WORKLOAD.strip("\n").replace("requests_per_day: 24000000", f"requests_per_day: {24000000 * K}"))
print("\n".join(out))
