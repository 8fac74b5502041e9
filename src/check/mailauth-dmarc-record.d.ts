/** mailauth 4.13.3 ships no types for its DMARC record lookup (the domain's record, else its organisational domain's). */
declare module "mailauth/lib/dmarc/get-dmarc-record.js" {
  const getDmarcRecord: (
    domain: string,
    resolver: (name: string, rrtype: string) => Promise<string[][] | string[]>,
  ) => Promise<false | { rr: string; isOrgRecord: boolean }>;
  export default getDmarcRecord;
}
