pragma solidity 0.4.24;

// A re-implementation, written for the gas benchmark from the behavioural description in
// shared/reference/original-wallet-chain.md §1 (not the original's code), of the 2018
// PDash escrow's storage layout and its normal-trade path: the order record with its
// twelve fields (including the buyer's DER RSA key in storage), the ten-state enum, SafeMath
// arithmetic and the same events. Compiled with solc 0.4.24 and the optimizer, as the
// issue's 855,000-gas figure was. Only what a complete trade executes is included.
contract Escrow2018 {
    enum State {
        Created, SellerConfirmed, ProxyFetched, ProxyDelivered, BuyerConfirmed,
        Finished, SellerRated, BuyerRated, Disputed, Withdrawn
    }

    struct OrderInfo {
        bytes32 descHash;
        bytes buyerRSAPubkey;
        address buyerAddress;
        address sellerAddress;
        address proxyAddress;
        address secondaryProxyAddress;
        uint offeredPrice;
        uint proxyFee;
        bytes32 deliverHash;
        uint endTime;
        State state;
        uint disputeId;
    }

    uint public numOrders = 0;
    mapping(uint => OrderInfo) public orderRecords;

    event OrderInitiated(address from, uint orderId, uint value);
    event SellerConfirmed(uint orderId, uint value);
    event ProxyFetched(uint orderId);
    event ProxyDelivered(uint orderId);
    event BuyerConfirmed(uint orderId);

    function add(uint a, uint b) internal pure returns (uint) { uint c = a + b; assert(c >= a); return c; }
    function sub(uint a, uint b) internal pure returns (uint) { assert(b <= a); return a - b; }
    function mul(uint a, uint b) internal pure returns (uint) {
        if (a == 0) return 0;
        uint c = a * b; assert(c / a == b); return c;
    }

    modifier onlyBefore(uint time) { require(now < time); _; }
    modifier inState(uint id, State s) { require(orderRecords[id].state == s); _; }

    function placeOrder(
        bytes32 descHash, bytes buyerRSAPubkey, address seller, address proxy,
        address secondaryProxy, uint proxyFee, uint timeAllowed
    ) public payable returns (uint) {
        require(msg.value > mul(proxyFee, 2));
        numOrders = add(numOrders, 1);
        orderRecords[numOrders] = OrderInfo({
            descHash: descHash, buyerRSAPubkey: buyerRSAPubkey, buyerAddress: msg.sender,
            sellerAddress: seller, proxyAddress: proxy, secondaryProxyAddress: secondaryProxy,
            offeredPrice: msg.value, proxyFee: proxyFee, deliverHash: bytes32(0),
            endTime: add(now, timeAllowed), state: State.Created, disputeId: 0
        });
        emit OrderInitiated(msg.sender, numOrders, msg.value);
        return numOrders;
    }

    function sellerConfirm(uint id) public payable inState(id, State.Created) onlyBefore(orderRecords[id].endTime) {
        require(msg.sender == orderRecords[id].sellerAddress);
        require(msg.value == orderRecords[id].offeredPrice);
        orderRecords[id].state = State.SellerConfirmed;
        emit SellerConfirmed(id, msg.value);
    }

    function proxyFetched(uint id) public inState(id, State.SellerConfirmed) onlyBefore(orderRecords[id].endTime) {
        require(msg.sender == orderRecords[id].proxyAddress || msg.sender == orderRecords[id].secondaryProxyAddress);
        orderRecords[id].state = State.ProxyFetched;
        emit ProxyFetched(id);
    }

    function proxyDelivered(bytes32 deliverHash, uint id)
        public inState(id, State.ProxyFetched) onlyBefore(orderRecords[id].endTime)
    {
        require(msg.sender == orderRecords[id].proxyAddress || msg.sender == orderRecords[id].secondaryProxyAddress);
        orderRecords[id].deliverHash = deliverHash;
        orderRecords[id].state = State.ProxyDelivered;
        emit ProxyDelivered(id);
    }

    function buyerConfirmDeliver(uint id)
        public inState(id, State.ProxyDelivered) onlyBefore(orderRecords[id].endTime)
    {
        OrderInfo storage o = orderRecords[id];
        require(msg.sender == o.buyerAddress);
        o.state = State.BuyerConfirmed;
        o.proxyAddress.transfer(o.proxyFee);
        o.secondaryProxyAddress.transfer(o.proxyFee);
        o.sellerAddress.transfer(sub(o.offeredPrice, mul(o.proxyFee, 2)));
        o.state = State.Finished;
        emit BuyerConfirmed(id);
    }
}
