// Every stage registers itself when its module loads; importing this loads them all.
import './conntrack.js';
import './policy.js';
import './xdp.js';
import './dnat.js';
import './ctlb.js';
import './l7.js';
import './encrypt.js';
import './route.js';
import './vfp.js';
