"""Training clauses for the action head: our own phrasings of each label, filled with random entities.

Every example is one clause (what :func:`understand.clauses` hands the head)
made of a frame, a phrasing of its label and entities, then masked by the
same code the run-time path uses. The independent test and validation
sentences (``nlu_eval``) are never read here: they were written by others,
after this vocabulary, to measure what it does not cover.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from .apps import lexicon
from .profile import SiteProfile
from .understand import clauses

A, H, N = "{A}", "{H}", "{N}"  # an application, a host, a network (a place)

PHRASES: dict[str, list[str]] = {
    "block": [
        "drop everything from {H}", "block that src", "ban that address outright", "block both addresses", "cut {A} off entirely", "{A} needs to be blocked", "i'd block {A}", "my recommendation is to block {A}", "please make {A} inaccessible", "no {A} allowed", "deny {H} at the edge", "kill all {A} sessions", "shut down any {A} on {N}", "block {A} on that machine", "block all traffic to and from {H}", "deny {A} outright", "get {A} blocked asap",
        "{A} is to be blocked", "{A} shall not be accessible", "{A} must not be reachable from {N}", "access to {A} is to be denied", "{A} should not be allowed on {N}", "i'd ban {H}", "i want {A} blocked", "get {A} blocked", "have {A} blocked on {N}", "{A} is no longer permitted", "all {A} is to be blocked across the network",
        "block {A}", "ban {A}", "stop {A}", "kill {A}", "cut off {A}", "shut down {A}", "deny {A}", "drop {A}",
        "disallow {A}", "forbid {A}", "blacklist {A}", "blocklist {A}", "prevent {A}", "get rid of {A}", "shut off {A}",
        "put a stop to {A}", "turn off access to {A}", "disable {A}", "prohibit {A}", "filter out {A}", "reject {A}",
        "firewall {A}", "blackhole {A}", "make {A} unreachable", "{A} must be blocked", "{A} is not allowed anymore",
        "no more {A}", "no {A} on the network", "don't let anyone use {A}", "nobody should be able to use {A}",
        "i want {A} gone", "we can't have {A} here", "keep {A} off the network", "{A} has to go", "shut {A} down",
        "stop people from using {A}", "block access to {A}", "deny all {A} traffic", "drop every {A} packet",
        "put {A} on the blocklist", "make sure nobody can reach {A}", "{A} should be banned", "ban {A} for good",
        "block all traffic from {H}", "block {H}", "ban {H}", "deny traffic to {H}", "drop everything from {H}",
        "blacklist the address {H}", "firewall off {H}", "block {A} on {H}", "stop {H} from using {A}",
        "block {A} for {N}", "ban {A} in {N}", "no {A} in {N}", "kill {A} across {N}", "shut that down", "block it",
        "kill it", "put an end to that", "stop it", "block them", "ban that", "nuke {A}", "squash {A}",
        "{A} is banned from now on", "lock out {A}", "refuse {A} connections", "deny {A} from {N}",
    ],
    "rate_limit": [
        "cap {A} to 5 mbit during that slot", "i'd cap {A}", "put a ceiling on {A}", "limit {A} to a fraction of the link", "throttle {A} back", "tone down {A}", "{A} should be capped at 10 percent", "shape {A} to 20 mbps", "cap {N} to 20 mbit", "i'd cap {A} on {N}", "slow {A} down a bit", "rate cap {A}",
        "{A} is to be throttled", "bandwidth for {A} shall be restricted", "i'd like {A} capped", "cap {N} to 20 mbit", "{A} should be rate limited", "please restrict bandwidth for {A}", "shape {A} down", "{A} needs to be throttled",
        "throttle {A}", "rate limit {A}", "rate-limit {A}", "cap {A}", "limit the bandwidth of {A}", "slow down {A}",
        "restrict the bandwidth of {A}", "put a cap on {A}", "bandwidth-limit {A}", "shape {A}", "traffic shape {A}",
        "police {A}", "squeeze {A}", "choke {A}", "clamp down on the bandwidth of {A}", "keep {A} under 5 mbps",
        "don't let {A} eat all the bandwidth", "{A} is hogging the bandwidth, rein it in", "reduce the speed of {A}",
        "set a bandwidth ceiling for {A}", "max 10 megabits for {A}", "limit {A} to 2 mbit", "cap {A} at 20 percent",
        "{A} should get at most a trickle", "slow {A} to a crawl", "put {A} on a bandwidth diet", "throttle {H}",
        "limit {H} to 1 mbps", "rate limit everything from {H}", "cap the bandwidth of {N}", "slow down {A} in {N}",
        "throttle {A} for {N}", "limit how much {A} can use", "keep {A} from hogging the link", "restrict {A} speeds",
        "turn down {A}'s bandwidth", "give {A} less bandwidth", "cap it", "throttle it", "slow it down",
        "rein in {A}", "stop {A} from saturating the uplink", "bandwidth cap on {A}", "apply a rate limit to {A}",
        "limit {A} bandwidth", "throttel {A}", "{A} needs a speed limit", "dial back {A}'s bandwidth",
    ],
    "prioritize": [
        "prio {A}", "prio {A} for the migration", "bump {A} up", "{A} first please", "give {A} more bandwidth", "{A} gets prio", "{A} needs to be smooth for the lectures", "make {A} not lag for online classes", "{A} must stay smooth", "prioritising {A} should fix it", "i'd prioritize {A}", "i recommend prioritising {A}", "{H} needs priority", "put {A} ahead of everything", "qos {A} to the top",
        "{A} needs priority", "{H} needs priority on the net", "{A} needs to be smooth", "make {A} not lag", "{A} must have priority", "i'd like {A} prioritised", "{A} is to receive the highest priority", "give {A} precedence", "{A} calls must be clear",
        "prioritize {A}", "prioritise {A}", "give {A} priority", "give priority to {A}", "put {A} first",
        "guarantee bandwidth for {A}", "make sure {A} runs smoothly", "make sure {A} doesn't lag",
        "make sure {A} doesn't stutter", "make sure {A} never drops", "keep {A} fast", "protect {A}", "boost {A}",
        "favour {A}", "favor {A}", "{A} is business critical, keep it fast", "reserve bandwidth for {A}",
        "bump up the priority of {A}", "high priority for {A}", "ensure good quality for {A}", "{A} must never lag",
        "keep {A} snappy", "expedite {A}", "fast lane for {A}", "give {A} the best qos", "{A} comes first",
        "make {A} a priority", "{A} gets top priority", "keep {A} smooth", "{A} should always have enough bandwidth",
        "no lag on {A} please", "don't let {A} stutter", "{A} keeps freezing, fix the priority", "prioritize {H}",
        "give {H} priority", "put {N} first", "prioritize {A} in {N}", "give {A} priority on {H}",
        "treat {A} as critical", "make {A} the most important traffic", "{A} must be crystal clear",
        "i need {A} to work perfectly", "put {A} at the front of the queue", "guarantee {A} quality",
        "priotize {A}", "prioritze {A}", "preferential treatment for {A}", "let {A} jump the queue",
    ],
    "deprioritize": [
        "drop {A} priority", "lower prio on {A}", "lower prio on that", "bump {A} down", "bump em down", "put {N} at the back of the line for {A}", "{A} can wait", "make {A} yield", "i'd lower the priority of {A}", "rather than blocking {A}, lower its priority", "background prio for {A}", "knock {A} down the priority list", "{A} can have whatever is left", "lower {A}'s priority on {N}", "{A} gets the lowest priority",
        "{A} is to receive the lowest priority", "push {A} to background prio", "{A} can just have whatever is left over", "{A} should be deprioritised", "lowest priority for {A}", "{A} goes to the bottom of the queue",
        "deprioritize {A}", "deprioritise {A}", "de-prioritize {A}", "lower the priority of {A}", "put {A} last",
        "give {A} background priority", "best effort for {A}", "let {A} wait", "{A} can have the leftovers",
        "move {A} to the back of the queue", "demote {A}", "give {A} low priority", "put {A} in the scavenger class",
        "{A} isn't important, push it down", "treat {A} as bulk traffic", "{A} gets what's left",
        "{A} is lower priority than everything else", "drop {A} to the lowest priority", "push {A} down the queue",
        "{A} can go slow when it's busy", "let {A} yield to everything else", "make {A} a low priority",
        "put {A} behind everything else", "lower {A}'s priority", "deprioritize {H}", "lower the priority of {N}",
        "deprioritize {A} in {N}", "{A} should only use spare capacity", "background class for {A}",
        "demote {A} to best effort", "less priority for {A}", "depriortize {A}", "{A} is not urgent, give it less priority",
        "{A} should take a back seat", "second-class treatment for {A}", "let other traffic go ahead of {A}",
    ],
    "isolate": [
        "take {H} off the network entirely", "quarantine host {H} without delay", "i'd quarantine the entire {N}", "pull {H} off the network until it's reimaged", "get {H} off the wire", "segment {H} away from everything", "my advice is to take {H} off the network", "quarantine the whole {N} subnet", "isolate that host now",
        "{H} must be isolated from the rest of the network", "i require {H} to be quarantined", "cut em off the network", "{N} is to be isolated", "{H} should be taken off the network", "i'd isolate {H}", "kick it off the network",
        "isolate {H}", "quarantine {H}", "cut {H} off from the network", "disconnect {H}", "take {H} off the network",
        "wall off {H}", "segregate {H}", "sandbox {H}", "pull the plug on {H}", "put {H} in the quarantine vlan",
        "contain {H}", "lock down {H}", "unplug {H}", "cordon off {H}", "kick {H} off the network",
        "remove {H} from the network", "isolate {N}", "quarantine {N}", "cut off {N}", "disconnect {N}",
        "wall off {N}", "fence off {N}", "take {N} offline", "cut it off", "isolate it", "quarantine it",
        "take it off the network", "disconnect it", "cut them off", "isolate that box", "quarantine the machine",
        "{H} needs to be isolated", "{H} should be quarantined right away", "get {H} off our network",
        "separate {N} from everything else", "{N} must be cut off from the rest", "isolate {H} immediately",
        "put {H} in jail", "lock {H} out of the network", "cut {N} off", "quaratine {H}", "isloate {H}",
        "take {H} off the lan", "cut off {H}", "disconnect {H} from everything", "island {N}",
    ],
    "investigate": [
        "can u watch what {H} is doing", "watch what {H} is doing", "could you capture what that host is sending", "check what {H} is sending", "pcap it", "dig into what it sent", "look at wat {H} is doing", "have a look at {H}", "find out why {H} talks to {A}", "grab a pcap of {H}", "sniff the traffic of {H}", "do a deep dive on {A}", "i'd like a capture of {A} from {N}", "look into why {A} is used on {N}",
        "i request a full analysis of {A}", "capture traffic from {H}", "can someone look at what {H} is doing", "{A} should be investigated", "i'd like an investigation into {H}", "pcap {H}", "get a capture of {H}", "look at what it's doing", "have a look at it",
        "investigate {A}", "investigate {H}", "look into {H}", "look into {A}", "check out {H}", "dig into {H}",
        "analyse {H}", "analyze {A}", "examine {H}", "inspect {A}", "capture the traffic of {H}", "take a pcap of {H}",
        "find out what {H} is doing", "figure out what {A} is up to", "take a look at {H}", "audit {A}",
        "trace {H}", "deep dive into {A}", "scrutinize {H}", "review the traffic of {N}", "look at {A} in {N}",
        "have someone check {H}", "dig into the {A} traffic", "investigate what's going on with {H}",
        "check what {H} has been talking to", "i want to know what {H} is sending", "run an investigation on {H}",
        "study {A} on {N}", "open an investigation into {H}", "look deeper into {A}", "examine {A} from {H}",
        "analyse it", "look into it", "dig into that", "investigate that", "check it out", "take a closer look at it",
        "get me a capture of {A}", "research {H}", "probe into {A}", "investgate {H}", "anaylze {H}",
        "see what {H} is up to", "find out who is using {A}", "track down the {A} traffic", "look closely at {N}",
    ],
    "notify": [
        "lemme know if anybody in {N} fires up {A}", "tell me if anyone on {N} is using {A}", "ping me if anyone on {N} starts using {A}", "give me a heads up if {A} appears", "alert you if {A} shows up", "warn me when {H} goes over 100 mbit", "let the soc know if {H} talks to {A}", "raise a flag whenever {A} is seen", "i want a notification whenever {A} starts", "holler if {A} shows up", "notify us should {A} be observed",
        "i am to be alerted upon {A}", "the security team must be alerted should {A} be seen", "ensure that i am notified whenever {A} is observed", "lemme know if {A} shows up", "i want to be notified about {A}", "{A} should raise an alert", "the soc should be told about {A}", "give me a shout if {H} tries again",
        "notify me about {A}", "alert me about {A}", "tell me about {A}", "let me know about {A}", "warn me about {A}",
        "ping me about {A}", "email me when {A} shows up", "page me if {H} does that again", "send me a message about {A}",
        "keep me posted on {A}", "give me a heads up about {A}", "flag {A}", "raise an alert when {A} appears",
        "notify the team about {A}", "notify the soc about {H}", "report {A} to me", "watch {A} and tell me",
        "keep an eye on {H} and shout if anything happens", "monitor {A} and alert me", "alert me if {H} comes back",
        "let me know if {A} shows up again", "tell me when {H} goes online", "warn us about {A} in {N}",
        "let me know if you see {A}", "notify me whenever {A} is used", "i want an alert for {A}",
        "send an alert if {H} talks to {A}", "tell me if it comes back", "let me know if it happens again",
        "alert me when it shows up", "ping me if that happens again", "shout if {A} shows up", "heads up me on {A}",
        "keep an eye on {A}", "monitor {N} for {A}", "alert on {A}", "notfy me about {A}",
        "alret me about {H}", "drop me a note if {A} appears", "text me if {H} misbehaves", "i'd like to hear about {A}",
        "inform me about {A}", "keep tabs on {H} and report back", "let the on-call know about {A}",
    ],
    "context": [
        "whoever is on {H} is running {A} to dodge the filters", "{A} calls from {N} drop every time the backup kicks off", "rather than capping it", "because both share the same uplink", "{N} shows {A} fingerprints", "several machines in {N} show signs of {A}", "the device was reported lost", "people use it to skip the filter", "it's killing the wifi", "{A} keeps dropping", "the calls get choppy", "{A} is slow again", "users say {A} lags", "{H} looks like a misconfigured viewer", "{A} is hammering the uplink", "the replication will take a little longer", "live meetings are unaffected", "{N} is saturating the link", "we see {A} every evening", "{A} recordings are uploaded every evening", "it spikes every morning", "the logs show {H} talking to {A}", "given the spread", "before we do anything drastic", "your it confirmed that's not sanctioned", "it's for a class", "docs need it for rosters", "{H} keeps getting slammed with {A}", "{A} is eating the bandwidth in {N}", "{H} is flooding us with {A}", "{A} traffic is spiking", "that box is compromised", "{H} is misbehaving", "the students found a way around the filter with {A}", "{A} is crowding out everything else",
        "{A} showing up on {N}", "{H} chatty on {A} again", "{N} pulling {A} hard", "{H} has been brute forcing {A} all night", "{H} reaches {A} directly", "{A} eating the uplink", "we observed {N} sending {A} to {H}",
        "someone at {H} is scanning our ports", "{H} keeps talking to {A}", "we see a lot of {A} from {H}",
        "there is weird traffic from {H}", "{H} looks infected", "users in {N} complain about {A}",
        "{A} is eating our bandwidth", "{H} is sweeping the network", "the machines in {N} keep hitting {A}",
        "{H} has been sending {A} all night", "it looks like {H} runs {A}", "{N} is full of {A}",
        "{A} traffic from {N} has doubled", "the boxes in {N} keep talking to {A}", "{H} is beaconing every minute",
        "we caught {H} doing {A}", "{A} showed up on {H} this morning", "there's {A} coming from {N}",
        "{H} is the one doing it", "it's {H}", "the culprit is {H}", "it's {A} again", "looks like {A}",
        "{A} in {N}", "{A} on {H}", "also {A}", "and {N} too", "{H} as well", "same for {N}", "{A} too",
        "and {A}", "on {N}", "for {H}", "regarding {A}", "about {H}", "concerning {A} in {N}",
    ],
    "negated": [
        "stop blocking {A} in {N}, it's for a class", "unblock {A} on {N}", "please disregard my last request", "{A} is not to be throttled any more", "let {A} run normally again", "lift the cap on {A}", "take {H} out of quarantine", "don't isolate {H}, it's the ceo's laptop", "no need to alert on {A} anymore", "stop limiting {A} now", "{A} can be unblocked",
        "stop shaping {A}", "disregard my earlier instruction, {A} is not to be throttled", "dont block {A}, people need it", "{A} is not to be blocked", "no need to quarantine {H} anymore", "please stop limiting {A}",
        "don't block {A}", "do not throttle {A}", "never isolate {H}", "stop blocking {A}", "unblock {A}",
        "lift the ban on {A}", "remove the limit on {A}", "allow {A} again", "leave {A} alone", "{A} is fine, leave it",
        "no need to block {A}", "cancel the quarantine of {H}", "un-throttle {A}", "whitelist {A}", "permit {A}",
        "{A} should be allowed", "let {A} through", "undo that", "re-enable {A}", "restore access to {A}",
        "{A} is ok now", "don't touch {A}", "please don't limit {A}", "do not prioritize {A}", "stop throttling {A}",
        "release {H} from quarantine", "bring {H} back online", "reconnect {H}", "take {A} off the blocklist",
        "don't bother with {A}", "there's no need to investigate {H}", "don't alert me about {A}",
        "stop notifying me about {A}", "no more alerts for {A}", "stop prioritizing {A}", "unban {H}",
        "allow {A} on {N}", "{H} is clean, let it back in", "revert the {A} block", "undo the throttling of {A}",
        "remove {H} from the blacklist", "we no longer need to block {A}", "forget about blocking {A}",
    ],
    "question": [
        "dns latency on {N}, numbers?", "is {A} blocked on {N} or nah?", "who's the top talker on {N} right now?", "is it normal for {H} to talk to {A}?", "could you confirm whether {H} is reachable?", "how many flows did {H} open in the last hour?", "what proportion of traffic is encrypted?", "any idea why {A} is slow?", "numbers for {A}?", "stats on {N}?", "can you tell me how many devices use {A}?", "which hosts on {N} use {A} the most?", "is {A} still throttled?", "what's {H} been up to?",
        "is anyone using {A}?", "how much bandwidth does {A} use?", "what's the top application?", "who is on {A}?",
        "are we blocking {A}?", "did {A} get blocked?", "which hosts talk to {A}?", "how many alerts today?",
        "why is {A} slow?", "is {H} infected?", "when did {A} start?", "what is using all the bandwidth?",
        "is {A} allowed here?", "how busy is {N}?", "what does {H} do?", "does {H} run {A}?", "is there {A} in {N}?",
        "what happened to {H} last night?", "how much {A} did {N} use this week?", "who owns {H}?",
        "what's the status of {H}?", "any alerts for {N}?", "what is {A}?", "is {A} dangerous?",
        "how many users are on {A}?", "where is {A} coming from?", "which app is the heaviest?",
        "is {H} still quarantined?", "has {A} been throttled?", "what did you block yesterday?",
        "can you tell me what {H} is?", "do we see any {A}?", "are there miners on {N}?", "what time is it?",
    ],
    "other": [
        "coffee machine on the 2nd floor broke again", "end of shift, nothing to report", "reboot core switch at 03:00", "open tcp 502 from {N} to {H}", "set up a new ssid for the event", "prepare the quarterly report", "establish a firewall rule permitting https to {H}", "good morning all, hope you had a restful weekend", "the vending machine ate my dollar", "ugh mondays", "marco from vendor support here", "change ticket 2231", "add {H} to dns", "give bob admin rights", "patch the firewall tonight", "update the wiki page", "migrate the mail server", "renew the domain", "lunch is on me", "who has the projector remote",
        "end of shift, nothing to report", "looks like beaconing", "av flagged it", "profs are mad", "registration opens tomorrow", "following up on case 4471", "thanks for the pcap", "from the logs you sent", "handing over to the night crew", "we can revisit once the vendor patches it",
        "hi team", "thanks", "thank you", "cheers", "good morning", "hello", "asap", "urgent", "fyi", "thanks a lot",
        "tell me a joke", "what's the weather like", "order pizza for the team", "book a meeting room",
        "reboot the router", "reset my password", "add a user account for bob", "open port 22", "update the firmware",
        "create a new vlan", "change the wifi password", "renew the certificate", "back up the switch config",
        "log everything to a file", "restart the sensor", "upgrade the core switch", "print the report",
        "write a poem about routers", "schedule a call with the vendor", "install antivirus on the laptops",
        "forward port 8080 to the web server", "turn on the projector", "make coffee", "sing a song",
        "translate this to french", "delete old emails", "free up disk space", "set up a printer", "add a dns record",
        "configure dhcp", "change the admin password", "send the invoice", "have a nice weekend", "see you tomorrow",
        "lol", "ok", "sounds good", "never mind", "sorry, wrong window", "who won the game last night",
        "the coffee machine is broken", "my keyboard is sticky", "remind me to call mom", "what's for lunch",
    ],
}

FRAMES = ["{X}", "{X}", "{X}", "please {X}", "{X} please", "can you {X}?", "could you {X}?", "would you {X}?",
          "i need you to {X}", "we need to {X}", "let's {X}", "go ahead and {X}", "kindly {X}", "pls {X}", "{X} asap",
          "{X}, thanks", "{X} right now", "{X} for now", "{X} immediately", "hey, {X}", "urgent: {X}", "fyi {X}",
          "per ticket 4521 {X}", "as discussed {X}", "boss says {X}", "is it possible to {X}?", "would you mind if we {X}",
          "i'd like you to {X}", "we should {X}", "time to {X}", "{X}!!", "ok so {X}", "quick one: {X}",
          "can we {X}?", "could someone {X}", "hi, {X}", "team, {X}", "{X} when you get a chance", "just {X}",
          "effective immediately, {X}", "i would like to request that we {X}", "kindly ensure that we {X}", "per policy, {X}",
          "yo {X}", "{X} plz", "can u {X}", "{X} thx", "we must {X}", "management wants us to {X}", "{X} until further notice",
          "my recommendation: {X}", "i'd {X}", "my advice is to {X}", "what i'd suggest is to {X}", "the fix is to {X}",
          "we need you to {X} asap", "{X} without delay", "{X} for the time being", "{X} if possible", "pls can u {X}",
          "{X} until we know more", "so {X}", "then {X}", "and {X}", "also {X}", "{X} too"]  # fmt: skip
PLAIN_FRAMES = ["{X}", "{X}", "{X}", "{X}?", "hey, {X}", "so {X}", "fyi {X}", "{X}, thanks", "ok {X}"]
PLACES = ["lab", "dorms", "guest wifi", "library", "staff", "office", "ward", "reception", "cameras", "ot",
          "server room", "warehouse", "printers", "students", "imaging", "finance"]  # fmt: skip
HOSTS = ["printer", "nas", "gateway", "historian", "hmi", "kiosk", "web server", "build server", "pacs"]
PLACE_FORMS = ["the {P}", "{P}", "our {P}", "the {P} subnet", "the {P} network", "subnet {NET}", "{NET}", "the network {NET}"]
HOST_FORMS = ["{IP}", "host {IP}", "the box at {IP}", "{IP}", "the {HN}", "our {HN}", "the machine {IP}", "{IP}"]


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return str(ipaddress.IPv6Address(0x20010DB8 << 96 | rng.getrandbits(64)))
    return f"{rng.choice([10, 172, 192])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _net(rng: random.Random) -> str:
    prefix = rng.choice([16, 20, 22, 24, 24, 26])
    return str(ipaddress.ip_network(f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/{prefix}", strict=False))


def _app(rng: random.Random) -> str:
    lex = lexicon()
    phrase = rng.choice(list(lex.phrases))
    text = " ".join(phrase)
    many = rng.random()
    if many < 0.15:
        text += rng.choice([" and ", ", ", " or "]) + " ".join(rng.choice(list(lex.phrases)))
    return text + rng.choice(["", "", "", " traffic", " usage", " connections"])


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:]


def _fill(template: str, rng: random.Random, profile: SiteProfile) -> str:
    out = template
    while "{A}" in out:
        out = out.replace("{A}", _app(rng), 1)
    while "{H}" in out:
        form = rng.choice(HOST_FORMS)
        hn = rng.choice(list(profile.hosts)) if profile.hosts else "printer"
        out = out.replace("{H}", form.replace("{IP}", _ip(rng)).replace("{HN}", hn), 1)
    while "{N}" in out:
        form = rng.choice(PLACE_FORMS)
        place = rng.choice(list(profile.subnets)) if profile.subnets else "lab"
        out = out.replace("{N}", form.replace("{P}", place).replace("{NET}", _net(rng)), 1)
    return out


def _profile(rng: random.Random) -> SiteProfile:
    places = rng.sample(PLACES, 4)
    hosts = rng.sample(HOSTS, 3)
    return SiteProfile(site="site", working_hours={"start": "08:00", "end": "18:00"},
                       subnets={p: f"10.{k}.{rng.randrange(256)}.0/24" for k, p in enumerate(places)},
                       hosts={h: f"192.168.{k}.{rng.randrange(1, 255)}" for k, h in enumerate(hosts)},
                       periods={"exams": {"start": "08:00", "end": "20:00"}})  # fmt: skip


def _scope(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.55:
        return ""
    if r < 0.75:
        return " " + rng.choice(["in", "on", "for", "across", "from"]) + " {N}"
    if r < 0.85:
        return " " + rng.choice(["on", "from", "for"]) + " {H}"
    return " " + rng.choice(["after hours", "during working hours", "on weekends", "tonight", "at night",
                             "from 9pm to 6am", "during exams", "on the whole network", "for everyone"])  # fmt: skip


def example(rng: random.Random, label: str) -> dict[str, Any] | None:
    """One masked training clause of ``label`` (None when the pipeline cuts it in several clauses)."""
    phrase = rng.choice(PHRASES[label])
    if label in ("context", "question", "other"):
        text = rng.choice(PLAIN_FRAMES).replace("{X}", phrase)
    else:
        text = rng.choice(FRAMES).replace("{X}", phrase + (_scope(rng) if "{" in phrase or rng.random() < 0.3 else ""))
    if rng.random() < 0.1:
        words = text.split()
        k = rng.randrange(len(words))
        words[k] = _typo(words[k], rng)
        text = " ".join(words)
    if rng.random() < 0.15:
        text = text.upper()
    profile = _profile(rng)
    text = _fill(text, rng, profile)
    found = clauses(text, profile, None)
    if len(found) != 1:
        return None
    return {"text": text, "masked": found[0].masked(), "label": label}


def dataset(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` examples, the labels balanced (actions a little more often), deterministic for a seed."""
    rng = random.Random(seed)
    weights = {label: (1.3 if label in ("block", "rate_limit", "prioritize", "deprioritize", "isolate", "investigate", "notify")
                       else 1.0) for label in PHRASES}  # fmt: skip
    labels, w = list(weights), list(weights.values())
    out: list[dict[str, Any]] = []
    while len(out) < n:
        ex = example(rng, rng.choices(labels, w)[0])
        if ex is not None:
            out.append(ex)
    return out
