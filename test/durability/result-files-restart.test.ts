/** Durability of result files: the planner killed (kill -9) at 8 random moments of a transfer. */
import { resultKillSuite } from './result-kill.js';

resultKillSuite(8);
